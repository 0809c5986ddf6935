//! The `rosey-plugin-host` process: one plugin (`isolation: process`) in a sandbox of its own.
//!
//! rosey-runtime starts it with one end of each of two socket pairs as file descriptors 3 and
//! 4 and nothing else to talk to. It reads the [`frames::Init`] frame, loads the plugin's
//! library copy through the same abi_stable interface the runtime uses in process, puts itself
//! in the [`sandbox`], builds the instance, and then runs each delivery the runtime sends, one
//! at a time. The plugin's host handle turns every call into a [`frames::Call`] frame and
//! waits for its reply; the runtime checks it and performs it (permissions, subscriptions and
//! NATS live there).
//!
//! Descriptor 3 is the serving lane: the deliveries, and the frames of the thread running them
//! (which reads its calls' replies itself), so that a delivery and its outcome cost one
//! wake-up on each side. Descriptor 4 is the side lane: the calls, publishes and log lines of
//! the plugin's own threads, which the runtime serves as they come, during a delivery or not.

use crate::error::HostError;
use crate::frames::{self, Call, FrameReader, FromHost, Init, Msg, ToHost, Value};
use crate::permissions::{check_subject, Access, Permissions};
use crate::sandbox::{self, Limits};
use abi_stable::library::lib_header_from_path;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RErr, ROk, ROption, RResult, RString, RVec};
use crossbeam_channel::Sender;
use rosey_plugin_api::ffi::{
    FfiAnswer, FfiChannel, FfiError, FfiErrorKind, FfiMessage, HostHandle, HostHandle_TO, LogLevel,
    PluginBox, PluginInit, PluginModRef,
};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write as _};
use std::os::fd::FromRawFd as _;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The file descriptor the runtime hands its end of the serving lane on.
pub const SOCKET_FD: i32 = 3;

/// The file descriptor the runtime hands its end of the side lane on (the plugin's own
/// threads' frames).
pub const SIDE_FD: i32 = 4;

/// The argument that makes the host only apply its sandbox (with the default limits) and
/// exit: 0 when it could, else 78 with what is missing on stderr. rosey-runtime runs it at
/// start when a plugin runs in `process` isolation.
pub const PROBE_FLAG: &str = "--probe";

/// The host's side of the two lanes: the serving thread's frames out through the outbox and
/// its input read by itself; the other threads' frames out on the side lane, their replies
/// matched to callers by the side lane's reader.
struct Link {
    /// The plugin's name and publish permissions, to refuse a publish at once (the runtime
    /// checks again: this only saves the round trip).
    plugin: String,
    publish: Permissions,
    out: Mutex<Outbox>,
    /// The serving lane's input, read only by the serving thread (the lock is never
    /// contended).
    input: Mutex<ServingInput>,
    /// The side lane, written by the plugin's own threads.
    side: Mutex<UnixStream>,
    pending: Mutex<HashMap<u64, Sender<Result<Value, FfiError>>>>,
    next_id: AtomicU64,
    /// The thread running the plugin's handlers, whose one-way frames may wait in the outbox.
    serving: std::thread::ThreadId,
}

/// Frames the serving thread produced during one delivery and not yet written: the
/// delivery's publishes, log lines and outcome go out in one write when it ends (never later:
/// the next handler may never return, and the runtime must know this one's outcome).
struct Outbox {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// What the serving thread reads: deliveries, and the replies to its own calls. Deliveries
/// that come while it waits for a reply (the rest of a batch) wait in `backlog`.
struct ServingInput {
    /// Buffered: a batch of deliveries comes in one read.
    frames: FrameReader<UnixStream>,
    backlog: VecDeque<ToHost>,
}

impl ServingInput {
    /// The next frame on the lane; an error when the runtime closed it or sent garbage.
    fn read(&mut self) -> io::Result<ToHost> {
        loop {
            // No read timeout is set: `None` is only a spurious wake-up.
            if let Some(body) = self.frames.next()? {
                return ToHost::decode(&body);
            }
        }
    }

    /// The next delivery.
    fn next_delivery(&mut self) -> io::Result<ToHost> {
        match self.backlog.pop_front() {
            Some(frame) => Ok(frame),
            None => self.read(),
        }
    }
}

/// An outbox this large is written at once.
const FLUSH_BYTES: usize = 64 * 1024;

impl Outbox {
    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.stream.write_all(&self.buf);
        self.buf.clear();
        written
    }
}

impl Link {
    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `frame` on the serving lane now (after whatever waits in the outbox, keeping
    /// the order).
    fn send(&self, frame: &FromHost) -> io::Result<()> {
        let body = frame.encode();
        let mut out = self.outbox();
        frames::write_frame(&mut out.buf, &body)?;
        out.flush()
    }

    /// Writes `frame` on the side lane now (another thread of the plugin's).
    fn send_aside(&self, frame: &FromHost) -> io::Result<()> {
        let mut body = Vec::new();
        frames::write_frame(&mut body, &frame.encode())?;
        self.side
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(&body)
    }

    fn serving_here(&self) -> bool {
        std::thread::current().id() == self.serving
    }

    /// Writes `frame` with the next flush when the serving thread sends it, else now on the
    /// side lane.
    fn queue(&self, frame: &FromHost) -> io::Result<()> {
        if !self.serving_here() {
            return self.send_aside(frame);
        }
        let body = frame.encode();
        let mut out = self.outbox();
        frames::write_frame(&mut out.buf, &body)?;
        if out.buf.len() >= FLUSH_BYTES {
            out.flush()?;
        }
        Ok(())
    }

    /// Writes what waits in the outbox.
    fn flush(&self) -> io::Result<()> {
        self.outbox().flush()
    }

    fn call(&self, call: Call) -> Result<Value, FfiError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let gone = || FfiError::new(FfiErrorKind::Nats, "the runtime is gone");
        if self.serving_here() {
            // The serving thread reads its reply itself: no other thread to wake.
            self.send(&FromHost::Call { id, call })
                .map_err(|_| gone())?;
            let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let frame = input.read().map_err(|_| gone())?;
                match frame {
                    ToHost::Reply { id: got, result } if got == id => return result,
                    // A reply to nothing this thread waits for: the runtime is confused.
                    ToHost::Reply { .. } => return Err(gone()),
                    delivery => input.backlog.push_back(delivery),
                }
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        self.send_aside(&FromHost::Call { id, call })
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}

/// The plugin's host handle in a host process.
struct RemoteHandle(Arc<Link>);

fn guarded<T>(f: impl FnOnce() -> Result<T, FfiError>) -> RResult<T, FfiError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(e),
        Err(_) => RErr(FfiError::new(
            FfiErrorKind::Nats,
            "the plugin host failed inside a host call",
        )),
    }
}

fn unexpected() -> FfiError {
    FfiError::new(
        FfiErrorKind::Nats,
        "the runtime answered another kind of call",
    )
}

impl HostHandle for RemoteHandle {
    fn publish(&self, message: FfiMessage) -> RResult<(), FfiError> {
        guarded(|| {
            let subject = message.subject.as_str();
            check_subject(subject, false).map_err(HostError::Invalid)?;
            if !self.0.publish.allows(Access::Publish, subject) {
                return Err(HostError::Denied {
                    plugin: self.0.plugin.clone(),
                    access: Access::Publish,
                    subject: subject.to_owned(),
                }
                .into());
            }
            // One way: publishing only queues the message in the runtime, as in process.
            self.0
                .queue(&FromHost::Call {
                    id: frames::ONE_WAY,
                    call: Call::Publish(Msg::from_ffi(message)),
                })
                .map_err(|_| FfiError::new(FfiErrorKind::Nats, "the runtime is gone"))
        })
    }

    fn request(&self, message: FfiMessage, timeout_ms: u64) -> RResult<FfiMessage, FfiError> {
        guarded(|| {
            match self
                .0
                .call(Call::Request(Msg::from_ffi(message), timeout_ms))?
            {
                Value::Msg(m) => Ok(m.into_ffi()),
                _ => Err(unexpected()),
            }
        })
    }

    fn subscribe(&self, subject: RString, queue_group: ROption<RString>) -> RResult<u64, FfiError> {
        guarded(|| {
            let call = Call::Subscribe(
                subject.into_string(),
                queue_group.into_option().map(RString::into_string),
            );
            match self.0.call(call)? {
                Value::Id(id) => Ok(id),
                _ => Err(unexpected()),
            }
        })
    }

    fn unsubscribe(&self, id: u64) -> RResult<(), FfiError> {
        guarded(|| match self.0.call(Call::Unsubscribe(id))? {
            Value::Unit => Ok(()),
            _ => Err(unexpected()),
        })
    }

    fn log(&self, level: LogLevel, message: RString) {
        let _ = self.0.queue(&FromHost::Log(level, message.into_string()));
    }

    fn request_deferred(
        &self,
        message: FfiMessage,
        timeout_ms: u64,
        token: RString,
    ) -> RResult<(), FfiError> {
        guarded(|| {
            let call = Call::RequestLater(Msg::from_ffi(message), timeout_ms, token.into_string());
            match self.0.call(call)? {
                Value::Unit => Ok(()),
                _ => Err(unexpected()),
            }
        })
    }
}

/// Reads the side lane: replies go to the plugin's threads waiting on them. Ends when the
/// runtime closes it or sends garbage.
fn read_side(mut input: UnixStream, link: Arc<Link>) {
    loop {
        let frame = match frames::read_frame(&mut input).and_then(|b| ToHost::decode(&b)) {
            Ok(frame) => frame,
            Err(_) => break,
        };
        match frame {
            ToHost::Reply { id, result } => {
                let waiter = link
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(result);
                }
            }
            // Deliveries come on the serving lane only.
            _ => break,
        }
    }
    // Callers waiting on a reply that will never come get an error instead of hanging.
    link.pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
}

/// The host process's `main`.
pub fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(PROBE_FLAG) {
        return probe();
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "rosey-plugin-host: {e}");
            ExitCode::from(70)
        }
    }
}

/// `--probe`: the sandbox a plugin would get, applied to this process, which then exits.
fn probe() -> ExitCode {
    let defaults = rosey_config::PluginLimits::default();
    let limits = Limits {
        memory_bytes: defaults.memory_mib().saturating_mul(1 << 20),
        cpu_seconds: defaults.cpu_seconds(),
        open_files: defaults.open_files(),
    };
    match sandbox::apply(&limits) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(
                io::stderr(),
                "the plugin sandbox cannot be applied on this kernel: {e}"
            );
            ExitCode::from(78)
        }
    }
}

fn run() -> Result<(), String> {
    // SAFETY: rosey-runtime starts this process with its end of a socket pair on
    // `SOCKET_FD` (dup2 in the child before exec) and nothing else in this process owns or
    // closes that descriptor; a host started any other way fails on its first read.
    let socket = unsafe { UnixStream::from_raw_fd(SOCKET_FD) };
    // SAFETY: as for `SOCKET_FD`, with the side lane's end on `SIDE_FD`.
    let side = unsafe { UnixStream::from_raw_fd(SIDE_FD) };
    let side_input = side
        .try_clone()
        .map_err(|e| format!("socket {SIDE_FD}: {e}"))?;
    let mut input = socket
        .try_clone()
        .map_err(|e| format!("socket {SOCKET_FD}: {e}"))?;
    let first = frames::read_frame(&mut input)
        .and_then(|b| ToHost::decode(&b))
        .map_err(|e| format!("reading the init frame: {e}"))?;
    let ToHost::Init(init) = first else {
        return Err("the first frame was not init".into());
    };
    let link = Arc::new(Link {
        plugin: init.name.clone(),
        publish: Permissions::publish_only(init.publish.clone()),
        out: Mutex::new(Outbox {
            stream: socket,
            buf: Vec::new(),
        }),
        input: Mutex::new(ServingInput {
            frames: FrameReader::new(input),
            backlog: VecDeque::new(),
        }),
        side: Mutex::new(side),
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        serving: std::thread::current().id(),
    });
    let refuse = |link: &Link, message: String| {
        let _ = link.send(&FromHost::InitFailed(FfiError::new(
            FfiErrorKind::Invalid,
            message.clone(),
        )));
        message
    };
    let module = match lib_header_from_path(std::path::Path::new(&init.library))
        .and_then(|header| header.init_root_module::<PluginModRef>())
    {
        Ok(module) => module,
        Err(e) => return Err(refuse(&link, crate::loader::summarize(&e))),
    };
    let limits = Limits {
        memory_bytes: init.memory_bytes,
        cpu_seconds: init.cpu_seconds,
        open_files: init.open_files,
    };
    // Still single-threaded: the sandbox binds this thread and every thread started later.
    if let Err(e) = sandbox::apply(&limits) {
        return Err(refuse(&link, format!("cannot apply the sandbox: {e}")));
    }
    let reader_link = link.clone();
    let (tid_tx, tid_rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("frames".into())
        .spawn(move || {
            let _ = tid_tx.send(nix::unistd::gettid().as_raw());
            read_side(side_input, reader_link)
        })
        .map_err(|e| refuse(&link, format!("cannot start a thread: {e}")))?;
    // Before any plugin code runs: every thread started later is the plugin's.
    let reader_tid = tid_rx
        .recv()
        .map_err(|_| refuse(&link, "the frame reader did not start".into()))?;
    let own_threads = vec![nix::unistd::gettid().as_raw(), reader_tid]
        .into_iter()
        .filter_map(|t| u32::try_from(t).ok())
        .collect();
    let mut instance = match build(&init, module, &link) {
        Ok(instance) => instance,
        Err(e) => {
            let _ = link.send(&FromHost::InitFailed(e.clone()));
            return Err(format!("the plugin's constructor failed: {e}"));
        }
    };
    link.send(&FromHost::Ready(instance.metadata(), own_threads))
        .map_err(|e| format!("socket: {e}"))?;
    serve(&mut instance, &link)
}

fn build(init: &Init, module: PluginModRef, link: &Arc<Link>) -> Result<PluginBox, FfiError> {
    let plugin_init = PluginInit {
        host: HostHandle_TO::from_ptr(RBox::new(RemoteHandle(link.clone())), TD_Opaque),
        name: RString::from(init.name.as_str()),
        config_json: RString::from(init.config_json.as_str()),
        command_prefix: RString::from(init.command_prefix.as_str()),
        channels: init
            .channels
            .iter()
            .map(|(platform, channel, bot)| FfiChannel {
                platform: RString::from(platform.as_str()),
                channel: RString::from(channel.as_str()),
                bot_name: RString::from(bot.as_str()),
            })
            .collect::<RVec<_>>(),
        saved_state: init.saved_state.clone().map(RVec::from).into(),
        generation: init.generation,
    };
    (module.new())(plugin_init).into_result()
}

fn serve(instance: &mut PluginBox, link: &Link) -> Result<(), String> {
    let sent = |r: io::Result<()>| r.map_err(|e| format!("socket: {e}"));
    // After a panic the instance may be inconsistent: the rest of a batch of messages already
    // sent is refused (the runtime gives it to the next instance).
    let mut panicked = false;
    // The runtime closing the socket ends the host (it is being replaced or stopped).
    loop {
        // Not held while the plugin runs: its calls read the lane too.
        let next = link
            .input
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_delivery();
        let Ok(frame) = next else { break };
        match frame {
            ToHost::Message(_) if panicked => {
                let refused = FfiError::new(FfiErrorKind::Invalid, "not delivered: panicked");
                sent(link.queue(&FromHost::Done(Err(refused))))?;
            }
            ToHost::Message(m) => {
                let done = instance.on_message(m.into_ffi()).into_result();
                panicked = done.as_ref().is_err_and(|e| e.kind == FfiErrorKind::Panic);
                sent(link.queue(&FromHost::Done(done)))?;
            }
            ToHost::Answer {
                token,
                subject,
                result,
            } => {
                let answer = FfiAnswer {
                    token: RString::from(token),
                    subject: RString::from(subject),
                    result: match result {
                        Ok(m) => ROk(m.into_ffi()),
                        Err(e) => RErr(e),
                    },
                };
                let done = instance.on_answer(answer).into_result();
                sent(link.queue(&FromHost::Done(done)))?;
            }
            ToHost::Tick => {
                let done = instance.on_tick().into_result();
                sent(link.queue(&FromHost::Done(done)))?;
            }
            ToHost::Save => {
                let saved = instance.save_state().into_result().map(RVec::into_vec);
                sent(link.queue(&FromHost::Saved(saved)))?;
            }
            ToHost::Shutdown => {
                let done = instance.shutdown().into_result();
                sent(link.send(&FromHost::Done(done)))?;
                return Ok(());
            }
            ToHost::Init(_) | ToHost::Reply { .. } => {
                return Err("unexpected frame from the runtime".into());
            }
        }
        // The delivery is over: its frames go out now, in one write.
        sent(link.flush())?;
    }
    Ok(())
}
