//! The runtime's side of a plugin in a host process of its own (`isolation: process`): starts
//! `rosey-plugin-host` with one end of a socket pair, sends it the plugin's deliveries, and
//! serves the plugin's calls through the same [`HostCalls`] the in-process handle uses, on the
//! plugin's worker thread, while it waits for each delivery's outcome.
//!
//! Two socket pairs join them. On the serving lane go the deliveries and everything of the
//! host's thread running them (its publishes, calls and outcomes); the worker reads it itself
//! during a delivery, so an outcome costs one wake-up. On the side lane go the calls,
//! publishes and log lines of the plugin's own threads, which a thread of the runtime's
//! serves as they come, during a delivery or between; its end tells the worker at once that
//! the host died between deliveries.
//!
//! The host's death of any kind (a signal, an exit, garbage on the socket) is a [`Gone`] with
//! the reason, which the worker treats like a panic: the plugin restarts from its last saved
//! state in a new host.

use crate::boundary::HostCalls;
use crate::frames::{self, Call, FrameReader, FromHost, Init, Msg, ToHost, Value};
use crossbeam_channel::Receiver;
use rosey_plugin_api::ffi::{FfiAnswer, FfiError, FfiMessage, FfiMetadata};
use std::collections::VecDeque;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The host binary's name.
pub const HOST_BINARY: &str = "rosey-plugin-host";

/// Where the host binary is: `$ROSEY_PLUGIN_HOST`, else beside the running program (or one
/// folder up, for a test executable in `target/<profile>/deps`).
pub fn host_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ROSEY_PLUGIN_HOST").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    let beside = dir.join(HOST_BINARY);
    if beside.exists() {
        return beside;
    }
    dir.parent()
        .map_or(beside.clone(), |up| up.join(HOST_BINARY))
}

/// The host ended or broke the protocol; the reason says how (`killed by signal 11
/// (SIGSEGV)`, `exited with status 70`, `sent a malformed frame`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin host {pid} {reason}")]
pub struct Gone {
    /// The host's process id.
    pub pid: u32,
    /// What happened.
    pub reason: String,
}

/// A running host process.
pub struct RemoteHost {
    child: Arc<Mutex<Child>>,
    pid: u32,
    /// The host's own threads (serving the runtime), from its ready frame.
    threads: Vec<u32>,
    /// The serving lane, written and read by the worker only.
    out: UnixStream,
    frames: FrameReader<UnixStream>,
    /// The side lane's end (or garbage on it), from the thread serving it: the host's death
    /// seen between deliveries.
    incoming: Receiver<Incoming>,
    reaped: Option<String>,
    last_words: Arc<LastWords>,
}

/// The last lines a host wrote to its stderr (a panic message, Rust's "has overflowed its
/// stack" or "memory allocation failed"), which say why it died better than the signal.
#[derive(Default)]
struct LastWords {
    lines: Mutex<VecDeque<String>>,
    ended: AtomicBool,
}

/// How many of a host's last stderr lines its failure report quotes.
const LAST_WORDS: usize = 2;

/// Forwards a host's stderr to the log, line by line, keeping the last few.
fn forward_stderr(plugin: String, stderr: ChildStderr, words: Arc<LastWords>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        tracing::warn!(plugin = %plugin, "plugin host: {line}");
        let mut lines = words.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == LAST_WORDS {
            lines.pop_front();
        }
        lines.push_back(line);
    }
    words.ended.store(true, Ordering::SeqCst);
}

impl RemoteHost {
    /// Starts a host for `plugin`: its own process group, killed if the runtime's thread that
    /// started it dies, with its ends of two fresh socket pairs as its descriptors 3 (the
    /// serving lane) and 4 (the side lane). `one_way` serves the side lane (the calls,
    /// publishes and log lines of the plugin's own threads) on a thread of its own, as they
    /// come, whatever the worker is doing.
    pub fn spawn(plugin: &str, one_way: Box<dyn HostCalls>) -> io::Result<RemoteHost> {
        let (ours, theirs) = UnixStream::pair()?;
        let (side, their_side) = UnixStream::pair()?;
        let their_fd = theirs.as_raw_fd();
        let their_side_fd = their_side.as_raw_fd();
        let parent = std::process::id();
        let mut command = Command::new(host_binary());
        command
            .arg(plugin)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Piped, not inherited: a regular file there would make any write from the host
            // exceed its file size limit of 0 (SIGXFSZ).
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // async-signal-safe functions (dup2, fcntl, prctl, getppid, _exit); it touches no
        // memory shared with other threads of the parent.
        unsafe {
            command.pre_exec(move || {
                use crate::plugin_host::{SIDE_FD, SOCKET_FD};
                let place = |from: i32, to: i32| {
                    if from == to {
                        // dup2 onto itself would keep close-on-exec set.
                        if libc::fcntl(to, libc::F_SETFD, 0) == -1 {
                            return Err(io::Error::last_os_error());
                        }
                    } else if libc::dup2(from, to) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                };
                let mut side_fd = their_side_fd;
                if side_fd == SOCKET_FD {
                    // Out of the way of the serving lane's dup2.
                    side_fd = libc::fcntl(side_fd, libc::F_DUPFD_CLOEXEC, SIDE_FD + 1);
                    if side_fd == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                place(their_fd, SOCKET_FD)?;
                place(side_fd, SIDE_FD)?;
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The runtime died between fork and prctl: nobody would kill this host.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        drop(theirs);
        drop(their_side);
        let pid = child.id();
        let last_words = Arc::new(LastWords::default());
        if let Some(stderr) = child.stderr.take() {
            let (plugin, words) = (plugin.to_owned(), last_words.clone());
            std::thread::Builder::new()
                .name(format!("host-log-{plugin}"))
                .spawn(move || forward_stderr(plugin, stderr, words))?;
        }
        let input = ours.try_clone()?;
        // The worker's reads time out now and then to ask whether to give up.
        input.set_read_timeout(Some(ABANDON_POLL))?;
        // At most the side lane's end or garbage, once.
        let (tx, incoming) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name(format!("host-frames-{plugin}"))
            .spawn(move || serve_side(side, &tx, &*one_way))?;
        Ok(RemoteHost {
            child: Arc::new(Mutex::new(child)),
            pid,
            threads: Vec::new(),
            out: ours,
            frames: FrameReader::new(input),
            incoming,
            reaped: None,
            last_words,
        })
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the CPU guard needs to watch this host and stop it.
    pub fn watch(&self) -> HostWatch {
        HostWatch {
            pid: self.pid,
            threads: self.threads.clone(),
            child: self.child.clone(),
        }
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gone(&mut self, why: Option<String>) -> Gone {
        let reason = match &self.reaped {
            Some(r) => r.clone(),
            None => {
                // The socket broke: the host is ending or ended; make sure, and say how.
                let status = {
                    let mut child = self.child();
                    let _ = child.kill();
                    child.wait()
                };
                let mut how = match status {
                    Ok(status) => describe(status),
                    Err(e) => format!("could not be waited for ({e})"),
                };
                let words = self.last_words();
                if !words.is_empty() {
                    how = format!("{how}; its last words: {words}");
                }
                let reason = match why {
                    Some(why) if !how.starts_with("was killed") => format!("{why}; it {how}"),
                    _ => how,
                };
                self.reaped = Some(reason.clone());
                reason
            }
        };
        Gone {
            pid: self.pid(),
            reason,
        }
    }

    /// What the host last wrote to stderr, once it has ended (waiting briefly for the pipe
    /// to drain).
    fn last_words(&self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_millis(200);
        while !self.last_words.ended.load(Ordering::SeqCst) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let lines = self
            .last_words
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" / ")
    }

    fn send(&mut self, frame: &ToHost) -> Result<(), Gone> {
        if self.reaped.is_some() {
            return Err(self.gone(None));
        }
        match frames::write_frame(&mut self.out, &frame.encode()) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.gone(None)),
        }
    }

    /// Waits for the answer to the frame just sent, serving the plugin's calls through
    /// `calls` meanwhile. `abandon` is asked now and then whether to give up (the watchdog
    /// replaced this worker): the host is then killed.
    fn wait(
        &mut self,
        calls: &dyn HostCalls,
        abandon: &dyn Fn() -> bool,
    ) -> Result<FromHost, Gone> {
        loop {
            let incoming = match read_incoming(self.frames.next()) {
                Some(incoming) => incoming,
                None => {
                    // Nothing from the host for a while.
                    if abandon() {
                        return Err(self.kill("was replaced while stuck"));
                    }
                    continue;
                }
            };
            if let Some(outcome) = self.take(incoming, calls)? {
                return Ok(outcome);
            }
        }
    }

    /// What the side lane's thread hands the worker (the host's end), for it to wait on
    /// between deliveries (then handing it to [`RemoteHost::between_deliveries`]).
    pub fn incoming(&self) -> Receiver<Incoming> {
        self.incoming.clone()
    }

    /// Serves what the host sent between deliveries: a call of one of the plugin's own
    /// threads, a log line. Its end, or any other frame, is the host's death.
    pub fn between_deliveries(
        &mut self,
        incoming: Incoming,
        calls: &dyn HostCalls,
    ) -> Result<(), Gone> {
        match self.take(incoming, calls)? {
            None => Ok(()),
            Some(_) => Err(self.kill("answered a delivery it was not sent")),
        }
    }

    /// Serves a call or a log line and returns `None`, or returns any other frame; the end of
    /// the frames (or garbage) is the host's death.
    fn take(
        &mut self,
        incoming: Incoming,
        calls: &dyn HostCalls,
    ) -> Result<Option<FromHost>, Gone> {
        let frame = match incoming {
            Incoming::Frame(frame) => frame,
            Incoming::Ended => return Err(self.gone(None)),
            Incoming::Malformed(e) => {
                return Err(self.gone(Some(format!("sent a malformed frame ({e})"))))
            }
        };
        serve_frame(calls, frame, |reply| self.send(&reply))
    }

    /// Loads the library copy and builds the instance in the host; the plugin's metadata, or
    /// why it could not be built.
    pub fn init(
        &mut self,
        init: Init,
        calls: &dyn HostCalls,
        abandon: &dyn Fn() -> bool,
    ) -> Result<Result<FfiMetadata, FfiError>, Gone> {
        self.send(&ToHost::Init(init))?;
        match self.wait(calls, abandon)? {
            FromHost::Ready(metadata, threads) => {
                self.threads = threads;
                Ok(Ok(metadata))
            }
            FromHost::InitFailed(e) => Ok(Err(e)),
            _ => Err(self.kill("answered init with another frame")),
        }
    }

    /// Sends a delivery (a message, an answer, a tick, a shutdown) and waits for its outcome.
    pub fn deliver(
        &mut self,
        frame: ToHost,
        calls: &dyn HostCalls,
        abandon: &dyn Fn() -> bool,
    ) -> Result<Result<(), FfiError>, Gone> {
        self.send(&frame)?;
        match self.wait(calls, abandon)? {
            FromHost::Done(result) => Ok(result),
            _ => Err(self.kill("answered a delivery with another frame")),
        }
    }

    /// Sends `messages` at once and waits for each one's outcome in order, serving the
    /// plugin's calls meanwhile; `each` runs after every outcome (the watchdog's clock starts
    /// again per message). Stops at the host's death: the outcomes so far, and the death.
    pub fn deliver_batch(
        &mut self,
        messages: Vec<FfiMessage>,
        calls: &dyn HostCalls,
        abandon: &dyn Fn() -> bool,
        each: &mut dyn FnMut(),
    ) -> (Vec<Result<(), FfiError>>, Option<Gone>) {
        let n = messages.len();
        let mut out = Vec::new();
        for m in messages {
            // One write for the whole batch: each frame is length-prefixed already.
            if frames::write_frame(&mut out, &message(m).encode()).is_err() {
                return (Vec::new(), Some(self.kill("was sent a frame too large")));
            }
        }
        if self.reaped.is_some() || self.out.write_all(&out).is_err() {
            return (Vec::new(), Some(self.gone(None)));
        }
        let mut results = Vec::with_capacity(n);
        for _ in 0..n {
            match self.wait(calls, abandon) {
                Ok(FromHost::Done(result)) => results.push(result),
                Ok(_) => {
                    return (
                        results,
                        Some(self.kill("answered a delivery with another frame")),
                    )
                }
                Err(gone) => return (results, Some(gone)),
            }
            each();
        }
        (results, None)
    }

    /// `save_state` in the host.
    pub fn save(
        &mut self,
        calls: &dyn HostCalls,
        abandon: &dyn Fn() -> bool,
    ) -> Result<Result<Vec<u8>, FfiError>, Gone> {
        self.send(&ToHost::Save)?;
        match self.wait(calls, abandon)? {
            FromHost::Saved(result) => Ok(result),
            _ => Err(self.kill("answered save_state with another frame")),
        }
    }

    /// Kills the host (if it still runs) and reaps it.
    pub fn kill(&mut self, why: &str) -> Gone {
        if self.reaped.is_none() {
            let mut child = self.child();
            let _ = child.kill();
            let _ = child.wait();
            drop(child);
            self.reaped = Some(why.to_owned());
        }
        self.gone(None)
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            let mut child = self.child();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A host as the CPU guard sees it: its pid, its own threads, and a way to kill it that
/// cannot hit another process (the kill and the reaping take the same lock, and a reaped
/// child is not signalled again).
#[derive(Clone)]
pub struct HostWatch {
    /// The host's process id.
    pub pid: u32,
    /// The host's own threads, whose CPU time is not the plugin's.
    pub threads: Vec<u32>,
    child: Arc<Mutex<Child>>,
}

impl HostWatch {
    /// Kills the host if it has not been reaped yet; the worker sees it die.
    pub fn kill(&self) {
        let _ = self.child.lock().unwrap_or_else(|p| p.into_inner()).kill();
    }
}

/// Starts the host binary with `--probe` (it applies its sandbox and exits): whether this
/// kernel lets a host sandbox itself, else what is missing in the host's words.
pub fn probe_sandbox() -> Result<(), String> {
    let binary = host_binary();
    let output = Command::new(&binary)
        .arg(crate::plugin_host::PROBE_FLAG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(if said.is_empty() {
        format!("{} --probe {}", binary.display(), describe(output.status))
    } else {
        said
    })
}

/// How often a worker waiting on its host asks whether to give up (the watchdog replaced it).
const ABANDON_POLL: Duration = Duration::from_millis(50);

/// What the frame reader hands the worker.
pub enum Incoming {
    /// A frame.
    Frame(FromHost),
    /// The host closed its socket (it ended or is ending).
    Ended,
    /// The host sent something that is not a frame.
    Malformed(String),
}

/// A read from the serving lane as the worker sees it; `None` when the read timed out.
fn read_incoming(next: io::Result<Option<Vec<u8>>>) -> Option<Incoming> {
    Some(match next {
        Ok(Some(body)) => match FromHost::decode(&body) {
            Ok(frame) => Incoming::Frame(frame),
            Err(e) => Incoming::Malformed(e.to_string()),
        },
        Ok(None) => return None,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Incoming::Ended,
        Err(e) => Incoming::Malformed(e.to_string()),
    })
}

/// Serves the side lane (the plugin's own threads: publishes and log lines performed, calls
/// served and answered) as its frames come, until the host closes it or sends something
/// else; then tells the worker.
fn serve_side(side: UnixStream, tx: &crossbeam_channel::Sender<Incoming>, calls: &dyn HostCalls) {
    let Ok(mut out) = side.try_clone() else {
        let _ = tx.send(Incoming::Malformed("cannot clone the side lane".into()));
        return;
    };
    let mut frames = FrameReader::new(side);
    let end = loop {
        let frame = match read_incoming(frames.next()) {
            Some(Incoming::Frame(frame)) => frame,
            Some(end) => break end,
            // No read timeout is set; a spurious wake-up reads again.
            None => continue,
        };
        let reply = |reply: ToHost| {
            let mut body = Vec::new();
            frames::write_frame(&mut body, &reply.encode()).and_then(|()| out.write_all(&body))
        };
        match serve_frame(calls, frame, reply) {
            Ok(None) => {}
            // The host is gone; its end shows on the next read.
            Err(_) => continue,
            Ok(Some(_)) => {
                break Incoming::Malformed("sent a delivery's outcome on the side lane".into())
            }
        }
    };
    let _ = tx.send(end);
}

/// Serves a call (answered through `reply`) or a log line from a host and returns `None`, or
/// returns any other frame: the one rule both lanes serve their frames by.
fn serve_frame<E>(
    calls: &dyn HostCalls,
    frame: FromHost,
    reply: impl FnOnce(ToHost) -> Result<(), E>,
) -> Result<Option<FromHost>, E> {
    match frame {
        FromHost::Call {
            id: frames::ONE_WAY,
            call,
        } => {
            // The host checked it already; a refusal here (a plugin that skipped the check) is
            // logged by the boundary and otherwise dropped.
            let _ = serve(calls, call);
        }
        FromHost::Call { id, call } => {
            let result = serve(calls, call).map_err(FfiError::from);
            reply(ToHost::Reply { id, result })?;
        }
        FromHost::Log(level, text) => calls.log(level, &text),
        other => return Ok(Some(other)),
    }
    Ok(None)
}

/// A process's resident memory in KiB, from `/proc`, while it runs.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A message for the host.
pub fn message(m: FfiMessage) -> ToHost {
    ToHost::Message(Msg::from_ffi(m))
}

/// An answer for the host.
pub fn answer(a: FfiAnswer) -> ToHost {
    ToHost::Answer {
        token: a.token.into_string(),
        subject: a.subject.into_string(),
        result: a.result.into_result().map(Msg::from_ffi),
    }
}

fn serve(calls: &dyn HostCalls, call: Call) -> Result<Value, crate::error::HostError> {
    Ok(match call {
        Call::Publish(m) => {
            calls.publish(m.into_ffi())?;
            Value::Unit
        }
        Call::Request(m, timeout) => {
            Value::Msg(Msg::from_ffi(calls.request(m.into_ffi(), timeout)?))
        }
        Call::RequestLater(m, timeout, token) => {
            calls.request_later(m.into_ffi(), timeout, token)?;
            Value::Unit
        }
        Call::Subscribe(subject, queue) => Value::Id(calls.subscribe(&subject, queue.as_deref())?),
        Call::Unsubscribe(id) => {
            calls.unsubscribe(id)?;
            Value::Unit
        }
    })
}

/// How a host ended, in words the log and `rosey.runtime.plugin.failed` carry.
pub fn describe(status: std::process::ExitStatus) -> String {
    if let Some(signal) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(signal)
            .map(|s| s.as_str())
            .unwrap_or("?");
        let what = match signal {
            libc::SIGSEGV | libc::SIGBUS => "a memory fault or a stack overflow",
            libc::SIGABRT => "an abort (or an allocation past limits.memory_mib)",
            libc::SIGXCPU => "its CPU time limit (limits.cpu_seconds)",
            libc::SIGKILL => "a kill (the CPU time hard limit, the OOM killer, or the runtime)",
            libc::SIGSYS => "a forbidden system call",
            _ => "a signal",
        };
        format!("was killed by signal {signal} ({name}: {what})")
    } else {
        match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "ended".to_owned(),
        }
    }
}
