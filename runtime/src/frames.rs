//! The private protocol between rosey-runtime and a plugin's host process (`isolation:
//! process`): length-prefixed frames over the socket pair the runtime made for that host.
//!
//! Each frame is a little-endian `u32` length then that many bytes: a tag byte and the
//! fields, integers little-endian and strings and byte strings length-prefixed. The runtime
//! sends the plugin's deliveries ([`ToHost`]); the host sends the plugin's calls into the
//! runtime ([`Call`], the [`crate::boundary::HostCalls`] methods) and the outcome of each
//! delivery ([`FromHost`]). Nothing here trusts the peer: a malformed frame is an error, never
//! a panic, and a frame is at most [`MAX_FRAME`] bytes.

use rosey_plugin_api::ffi::{
    FfiCommandSpec, FfiError, FfiErrorKind, FfiMessage, FfiMetadata, LogLevel,
};
use std::io::{self, Read, Write};

/// Largest frame either side accepts (a NATS payload is at most a few MiB).
pub const MAX_FRAME: usize = 64 << 20;

/// A NATS message as it crosses the socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Msg {
    /// The subject.
    pub subject: String,
    /// Where an answer goes.
    pub reply: Option<String>,
    /// Header name and value pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Msg {
    /// From the FFI form.
    pub fn from_ffi(m: FfiMessage) -> Msg {
        Msg {
            subject: m.subject.into_string(),
            reply: m.reply.into_option().map(|r| r.into_string()),
            headers: m
                .headers
                .into_iter()
                .map(|t| (t.0.into_string(), t.1.into_string()))
                .collect(),
            payload: m.payload.into_vec(),
        }
    }

    /// To the FFI form.
    pub fn into_ffi(self) -> FfiMessage {
        use abi_stable::std_types::{RString, RVec, Tuple2};
        FfiMessage {
            subject: RString::from(self.subject),
            reply: self.reply.map(RString::from).into(),
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
                .collect::<RVec<_>>(),
            payload: RVec::from(self.payload),
        }
    }
}

/// Everything the host needs to build the plugin's instance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Init {
    /// The library copy to load.
    pub library: String,
    /// The plugin's configured name.
    pub name: String,
    /// Its configuration without the runtime's keys.
    pub config_json: String,
    /// The chat command prefix.
    pub command_prefix: String,
    /// Channels it serves: platform, channel, the bot's name there.
    pub channels: Vec<(String, String, String)>,
    /// The state its previous instance saved.
    pub saved_state: Option<Vec<u8>>,
    /// The library generation.
    pub generation: u64,
    /// Address space limit in bytes.
    pub memory_bytes: u64,
    /// CPU time limit in seconds.
    pub cpu_seconds: u64,
    /// Open files limit.
    pub open_files: u64,
    /// The subjects the plugin may publish to (its permissions), so the host refuses a
    /// publish at once and sends the allowed ones without waiting; the runtime checks again.
    pub publish: Vec<String>,
}

/// What the runtime sends a host.
#[derive(Debug, Clone, PartialEq)]
pub enum ToHost {
    /// Load the library and build the instance (the first frame, once).
    Init(Init),
    /// Deliver a message (`on_message`).
    Message(Msg),
    /// Deliver a deferred request's outcome (`on_answer`).
    Answer {
        /// The plugin's token.
        token: String,
        /// Where the request went.
        subject: String,
        /// The reply or why there is none.
        result: Result<Msg, FfiError>,
    },
    /// `on_tick`.
    Tick,
    /// `save_state`.
    Save,
    /// `shutdown`; the host exits after answering.
    Shutdown,
    /// The outcome of one of the plugin's calls.
    Reply {
        /// The call's id.
        id: u64,
        /// Its outcome.
        result: Result<Value, FfiError>,
    },
}

/// The id of a call that gets no reply: a publish the host has already checked against the
/// plugin's permissions (the runtime checks it again and logs a refusal).
pub const ONE_WAY: u64 = 0;

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Nothing (publish, request later, unsubscribe).
    Unit,
    /// A reply (request).
    Msg(Msg),
    /// A subscription id (subscribe).
    Id(u64),
}

/// One call the plugin makes into the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`crate::boundary::HostCalls::publish`].
    Publish(Msg),
    /// [`crate::boundary::HostCalls::request`].
    Request(Msg, u64),
    /// [`crate::boundary::HostCalls::request_later`].
    RequestLater(Msg, u64, String),
    /// [`crate::boundary::HostCalls::subscribe`].
    Subscribe(String, Option<String>),
    /// [`crate::boundary::HostCalls::unsubscribe`].
    Unsubscribe(u64),
}

/// What a host sends the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum FromHost {
    /// The instance is built (answer to [`ToHost::Init`]), with the ids of the host's own
    /// threads (those serving the runtime), so the runtime can tell the CPU time of the
    /// plugin's own threads from theirs (`limits.cpu_share`).
    Ready(FfiMetadata, Vec<u32>),
    /// The library or the constructor failed (answer to [`ToHost::Init`]).
    InitFailed(FfiError),
    /// Answer to a delivery, a tick or a shutdown.
    Done(Result<(), FfiError>),
    /// Answer to [`ToHost::Save`].
    Saved(Result<Vec<u8>, FfiError>),
    /// A call into the runtime, answered by [`ToHost::Reply`] with the same id.
    Call {
        /// Chosen by the host, unique among its pending calls; [`ONE_WAY`] for a publish the
        /// host does not wait for.
        id: u64,
        /// The call.
        call: Call,
    },
    /// A log line (no answer).
    Log(LogLevel, String),
}

/// A frame that cannot be read.
fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }
    fn msg(&mut self, m: &Msg) -> &mut Self {
        self.str(&m.subject).opt_str(m.reply.as_deref());
        self.u64(m.headers.len() as u64);
        for (k, v) in &m.headers {
            self.str(k).str(v);
        }
        self.bytes(&m.payload)
    }
    fn error(&mut self, e: &FfiError) -> &mut Self {
        self.u8(kind_code(e.kind)).str(e.message.as_str())
    }
}

struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(bad("frame ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        let mut a = [0_u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn len(&mut self) -> io::Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.0.len())
            .ok_or_else(|| bad("length past the frame's end"))
    }
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }
    fn str(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| bad("text is not UTF-8"))
    }
    fn opt_str(&mut self) -> io::Result<Option<String>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            t => Err(bad(format!("option tag {t}"))),
        }
    }
    fn msg(&mut self) -> io::Result<Msg> {
        let subject = self.str()?;
        let reply = self.opt_str()?;
        let n = self.len()?;
        let mut headers = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            headers.push((self.str()?, self.str()?));
        }
        let payload = self.bytes()?;
        Ok(Msg {
            subject,
            reply,
            headers,
            payload,
        })
    }
    fn error(&mut self) -> io::Result<FfiError> {
        let kind = kind_of(self.u8()?)?;
        Ok(FfiError::new(kind, self.str()?))
    }
    fn end(&self) -> io::Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(bad("bytes after the frame's fields"))
        }
    }
}

fn kind_code(k: FfiErrorKind) -> u8 {
    match k {
        FfiErrorKind::Denied => 0,
        FfiErrorKind::Timeout => 1,
        FfiErrorKind::Nats => 2,
        FfiErrorKind::Plugin => 3,
        FfiErrorKind::Panic => 4,
        FfiErrorKind::Invalid => 5,
    }
}

fn kind_of(c: u8) -> io::Result<FfiErrorKind> {
    Ok(match c {
        0 => FfiErrorKind::Denied,
        1 => FfiErrorKind::Timeout,
        2 => FfiErrorKind::Nats,
        3 => FfiErrorKind::Plugin,
        4 => FfiErrorKind::Panic,
        5 => FfiErrorKind::Invalid,
        _ => return Err(bad(format!("error kind {c}"))),
    })
}

fn level_code(l: LogLevel) -> u8 {
    match l {
        LogLevel::Error => 0,
        LogLevel::Warn => 1,
        LogLevel::Info => 2,
        LogLevel::Debug => 3,
        LogLevel::Trace => 4,
    }
}

fn level_of(c: u8) -> io::Result<LogLevel> {
    Ok(match c {
        0 => LogLevel::Error,
        1 => LogLevel::Warn,
        2 => LogLevel::Info,
        3 => LogLevel::Debug,
        4 => LogLevel::Trace,
        _ => return Err(bad(format!("log level {c}"))),
    })
}

impl ToHost {
    /// The frame's body.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        match self {
            ToHost::Init(i) => {
                e.u8(0)
                    .str(&i.library)
                    .str(&i.name)
                    .str(&i.config_json)
                    .str(&i.command_prefix);
                e.u64(i.channels.len() as u64);
                for (p, c, b) in &i.channels {
                    e.str(p).str(c).str(b);
                }
                match &i.saved_state {
                    Some(s) => e.u8(1).bytes(s),
                    None => e.u8(0),
                };
                e.u64(i.generation)
                    .u64(i.memory_bytes)
                    .u64(i.cpu_seconds)
                    .u64(i.open_files);
                e.u64(i.publish.len() as u64);
                for p in &i.publish {
                    e.str(p);
                }
            }
            ToHost::Message(m) => {
                e.u8(1).msg(m);
            }
            ToHost::Answer {
                token,
                subject,
                result,
            } => {
                e.u8(2).str(token).str(subject);
                match result {
                    Ok(m) => e.u8(0).msg(m),
                    Err(err) => e.u8(1).error(err),
                };
            }
            ToHost::Tick => {
                e.u8(3);
            }
            ToHost::Save => {
                e.u8(4);
            }
            ToHost::Shutdown => {
                e.u8(5);
            }
            ToHost::Reply { id, result } => {
                e.u8(6).u64(*id);
                match result {
                    Ok(Value::Unit) => e.u8(0),
                    Ok(Value::Msg(m)) => e.u8(1).msg(m),
                    Ok(Value::Id(n)) => e.u8(2).u64(*n),
                    Err(err) => e.u8(3).error(err),
                };
            }
        }
        e.0
    }

    /// Reads a frame's body.
    pub fn decode(body: &[u8]) -> io::Result<ToHost> {
        let mut d = Dec(body);
        let frame = match d.u8()? {
            0 => {
                let library = d.str()?;
                let name = d.str()?;
                let config_json = d.str()?;
                let command_prefix = d.str()?;
                let n = d.len()?;
                let mut channels = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    channels.push((d.str()?, d.str()?, d.str()?));
                }
                let saved_state = match d.u8()? {
                    0 => None,
                    1 => Some(d.bytes()?),
                    t => return Err(bad(format!("option tag {t}"))),
                };
                let generation = d.u64()?;
                let memory_bytes = d.u64()?;
                let cpu_seconds = d.u64()?;
                let open_files = d.u64()?;
                let n = d.len()?;
                let mut publish = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    publish.push(d.str()?);
                }
                ToHost::Init(Init {
                    library,
                    name,
                    config_json,
                    command_prefix,
                    channels,
                    saved_state,
                    generation,
                    memory_bytes,
                    cpu_seconds,
                    open_files,
                    publish,
                })
            }
            1 => ToHost::Message(d.msg()?),
            2 => {
                let token = d.str()?;
                let subject = d.str()?;
                let result = match d.u8()? {
                    0 => Ok(d.msg()?),
                    1 => Err(d.error()?),
                    t => return Err(bad(format!("result tag {t}"))),
                };
                ToHost::Answer {
                    token,
                    subject,
                    result,
                }
            }
            3 => ToHost::Tick,
            4 => ToHost::Save,
            5 => ToHost::Shutdown,
            6 => {
                let id = d.u64()?;
                let result = match d.u8()? {
                    0 => Ok(Value::Unit),
                    1 => Ok(Value::Msg(d.msg()?)),
                    2 => Ok(Value::Id(d.u64()?)),
                    3 => Err(d.error()?),
                    t => return Err(bad(format!("reply tag {t}"))),
                };
                ToHost::Reply { id, result }
            }
            t => return Err(bad(format!("frame tag {t}"))),
        };
        d.end()?;
        Ok(frame)
    }
}

impl FromHost {
    /// The frame's body.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        match self {
            FromHost::Ready(m, threads) => {
                e.u8(0)
                    .str(m.name.as_str())
                    .str(m.version.as_str())
                    .str(m.description.as_str());
                e.u64(m.commands.len() as u64);
                for c in m.commands.iter() {
                    e.str(c.name.as_str())
                        .str(c.description.as_str())
                        .u64(c.min_rank.to_bits())
                        .u64(c.cooldown_ms);
                }
                e.u64(threads.len() as u64);
                for t in threads {
                    e.u64(u64::from(*t));
                }
            }
            FromHost::InitFailed(err) => {
                e.u8(1).error(err);
            }
            FromHost::Done(r) => {
                e.u8(2);
                match r {
                    Ok(()) => e.u8(0),
                    Err(err) => e.u8(1).error(err),
                };
            }
            FromHost::Saved(r) => {
                e.u8(3);
                match r {
                    Ok(b) => e.u8(0).bytes(b),
                    Err(err) => e.u8(1).error(err),
                };
            }
            FromHost::Call { id, call } => {
                e.u8(4).u64(*id);
                match call {
                    Call::Publish(m) => e.u8(0).msg(m),
                    Call::Request(m, t) => e.u8(1).msg(m).u64(*t),
                    Call::RequestLater(m, t, token) => e.u8(2).msg(m).u64(*t).str(token),
                    Call::Subscribe(s, q) => e.u8(3).str(s).opt_str(q.as_deref()),
                    Call::Unsubscribe(n) => e.u8(4).u64(*n),
                };
            }
            FromHost::Log(level, text) => {
                e.u8(5).u8(level_code(*level)).str(text);
            }
        }
        e.0
    }

    /// Reads a frame's body.
    pub fn decode(body: &[u8]) -> io::Result<FromHost> {
        use abi_stable::std_types::{RString, RVec};
        let mut d = Dec(body);
        let frame = match d.u8()? {
            0 => {
                let name = d.str()?;
                let version = d.str()?;
                let description = d.str()?;
                let n = d.len()?;
                let mut commands = RVec::new();
                for _ in 0..n {
                    commands.push(FfiCommandSpec {
                        name: RString::from(d.str()?),
                        description: RString::from(d.str()?),
                        min_rank: f64::from_bits(d.u64()?),
                        cooldown_ms: d.u64()?,
                    });
                }
                let n = d.len()?;
                let mut threads = Vec::new();
                for _ in 0..n {
                    let id = d.u64()?;
                    threads.push(u32::try_from(id).map_err(|_| bad(format!("thread id {id}")))?);
                }
                FromHost::Ready(
                    FfiMetadata {
                        name: RString::from(name),
                        version: RString::from(version),
                        description: RString::from(description),
                        commands,
                    },
                    threads,
                )
            }
            1 => FromHost::InitFailed(d.error()?),
            2 => FromHost::Done(match d.u8()? {
                0 => Ok(()),
                1 => Err(d.error()?),
                t => return Err(bad(format!("result tag {t}"))),
            }),
            3 => FromHost::Saved(match d.u8()? {
                0 => Ok(d.bytes()?),
                1 => Err(d.error()?),
                t => return Err(bad(format!("result tag {t}"))),
            }),
            4 => {
                let id = d.u64()?;
                let call = match d.u8()? {
                    0 => Call::Publish(d.msg()?),
                    1 => Call::Request(d.msg()?, d.u64()?),
                    2 => Call::RequestLater(d.msg()?, d.u64()?, d.str()?),
                    3 => Call::Subscribe(d.str()?, d.opt_str()?),
                    4 => Call::Unsubscribe(d.u64()?),
                    t => return Err(bad(format!("call tag {t}"))),
                };
                FromHost::Call { id, call }
            }
            5 => FromHost::Log(level_of(d.u8()?)?, d.str()?),
            t => return Err(bad(format!("frame tag {t}"))),
        };
        d.end()?;
        Ok(frame)
    }
}

/// Reads frames from a socket with a read timeout, keeping a partly received frame across
/// timeouts (a plain `read_exact` would lose the bytes it had read when the timeout struck).
pub struct FrameReader<R> {
    input: R,
    buf: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Frames from `input` (whose own timeout, if any, bounds [`FrameReader::next`]).
    pub fn new(input: R) -> Self {
        FrameReader {
            input,
            buf: Vec::new(),
        }
    }

    /// The next frame's body; `Ok(None)` when the input's read timed out first, and
    /// `UnexpectedEof` when the peer closed it.
    pub fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if len > MAX_FRAME {
                    return Err(bad(format!("a frame of {len} bytes is too large")));
                }
                if self.buf.len() >= 4 + len {
                    let body = self.buf[4..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Ok(Some(body));
                }
            }
            let mut chunk = [0_u8; 16 * 1024];
            match self.input.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| bad(format!("a frame of {} bytes is too large", body.len())))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame's body; `UnexpectedEof` when the peer closed the socket.
pub fn read_frame(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0_u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(bad(format!("a frame of {len} bytes is too large")));
    }
    let mut body = vec![0_u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Msg {
        Msg {
            subject: "rosey.commands.count".into(),
            reply: Some("_INBOX.x".into()),
            headers: vec![("Rosey-Source".into(), "counter".into())],
            payload: b"{\"a\":1}".to_vec(),
        }
    }

    #[test]
    fn every_frame_reads_back_as_written() {
        let to_host = [
            ToHost::Init(Init {
                library: "/tmp/libx.so".into(),
                name: "x".into(),
                config_json: "{}".into(),
                command_prefix: "!".into(),
                channels: vec![("cytube".into(), "c".into(), "bot".into())],
                saved_state: Some(vec![1, 2, 3]),
                generation: 4,
                memory_bytes: 1 << 30,
                cpu_seconds: 60,
                open_files: 64,
                publish: vec!["rosey.platform.*.send.chat".into(), "_INBOX.>".into()],
            }),
            ToHost::Message(msg()),
            ToHost::Answer {
                token: "t".into(),
                subject: "s".into(),
                result: Err(FfiError::new(FfiErrorKind::Timeout, "late")),
            },
            ToHost::Tick,
            ToHost::Save,
            ToHost::Shutdown,
            ToHost::Reply {
                id: 9,
                result: Ok(Value::Msg(msg())),
            },
            ToHost::Reply {
                id: 10,
                result: Ok(Value::Id(3)),
            },
        ];
        for f in to_host {
            assert_eq!(ToHost::decode(&f.encode()).unwrap(), f);
        }
        let from_host = [
            FromHost::Ready(
                FfiMetadata {
                    name: "x".into(),
                    version: "1".into(),
                    description: "d".into(),
                    commands: vec![FfiCommandSpec {
                        name: "count".into(),
                        description: "counts".into(),
                        min_rank: 1.5,
                        cooldown_ms: 100,
                    }]
                    .into(),
                },
                vec![41, 42],
            ),
            FromHost::InitFailed(FfiError::new(FfiErrorKind::Plugin, "no")),
            FromHost::Done(Ok(())),
            FromHost::Saved(Ok(vec![7])),
            FromHost::Call {
                id: 1,
                call: Call::RequestLater(msg(), 50, "tok".into()),
            },
            FromHost::Call {
                id: 2,
                call: Call::Subscribe("a.>".into(), Some("q".into())),
            },
            FromHost::Log(LogLevel::Warn, "careful".into()),
        ];
        for f in from_host {
            assert_eq!(FromHost::decode(&f.encode()).unwrap(), f);
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        let good = ToHost::Message(msg()).encode();
        for cut in 0..good.len() {
            assert!(ToHost::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(ToHost::decode(&long).is_err());
        assert!(FromHost::decode(&[99]).is_err());
        // A length claiming more than the frame holds.
        let mut lying = vec![1_u8];
        lying.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(ToHost::decode(&lying).is_err());
        let mut huge = Vec::new();
        huge.extend_from_slice(&(MAX_FRAME as u32 + 1).to_le_bytes());
        assert!(read_frame(&mut huge.as_slice()).is_err());
        let mut framed = Vec::new();
        write_frame(&mut framed, &good).unwrap();
        assert_eq!(read_frame(&mut framed.as_slice()).unwrap(), good);
        // Two frames read back one at a time, then the end.
        write_frame(&mut framed, b"second").unwrap();
        let mut reader = FrameReader::new(framed.as_slice());
        assert_eq!(reader.next().unwrap(), Some(good));
        assert_eq!(reader.next().unwrap(), Some(b"second".to_vec()));
        assert_eq!(
            reader.next().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
