//! Shared by the `bot_*` tests: writing a bot configuration, launching `rosey-bot` on it, and
//! reading what the bot publishes on NATS.

use crate::{command, lines_of, ChildGuard, NatsServer};
use futures::StreamExt;
use rosey_plugin_api::events::{BotStatus, Event};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the bot tests wait for any one message or condition.
pub const WAIT: Duration = Duration::from_secs(30);

/// Writes `config` as `rosey.json` in `dir` and returns its path.
pub fn write_config(dir: &Path, config: &serde_json::Value) -> PathBuf {
    let path = dir.join("rosey.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A `rosey-bot` command on the configuration file `config` and `nats`, for tests that set
/// its pipes themselves.
pub fn bot_command(config: &Path, nats: &NatsServer) -> Command {
    let mut cmd = command("rosey-bot");
    cmd.arg("--config")
        .arg(config)
        .arg("--nats")
        .arg(nats.url());
    cmd
}

/// Spawns `rosey-bot` on `config` and `nats` with its stdin, stdout and stderr discarded.
pub fn spawn_quiet_bot(config: &Path, nats: &NatsServer) -> ChildGuard {
    let mut cmd = bot_command(config, nats);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard::spawn("rosey-bot", cmd)
}

/// The next message on `sub` within `wait`.
pub async fn next_message_within(
    sub: &mut async_nats::Subscriber,
    wait: Duration,
) -> async_nats::Message {
    tokio::time::timeout(wait, sub.next())
        .await
        .expect("no message in time")
        .expect("subscription open")
}

/// The next message on `sub` within [`WAIT`].
pub async fn next_message(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    next_message_within(sub, WAIT).await
}

/// The next message on `sub` within `wait`, decoded as the contract's payload `T`.
pub async fn next_json_within<T: serde::de::DeserializeOwned>(
    sub: &mut async_nats::Subscriber,
    wait: Duration,
) -> T {
    let msg = next_message_within(sub, wait).await;
    serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
        panic!(
            "{} is not the contract's payload: {e}: {:?}",
            msg.subject, msg.payload
        )
    })
}

/// The next message on `sub` within [`WAIT`], decoded as `T`.
pub async fn next_json<T: serde::de::DeserializeOwned>(sub: &mut async_nats::Subscriber) -> T {
    next_json_within(sub, WAIT).await
}

/// Waits until the bot says it is connected (joined) on `rosey.events.bot.status`, each status
/// arriving within `wait`.
pub async fn wait_connected(status: &mut async_nats::Subscriber, wait: Duration) {
    wait_for_status(status, wait, true).await;
}

/// Waits until the bot says it lost its connection on `rosey.events.bot.status`.
pub async fn wait_disconnected(status: &mut async_nats::Subscriber, wait: Duration) {
    wait_for_status(status, wait, false).await;
}

/// Skips statuses until one says `connected`.
async fn wait_for_status(status: &mut async_nats::Subscriber, wait: Duration, connected: bool) {
    loop {
        let s: Event<BotStatus> = next_json_within(status, wait).await;
        if s.body.connected == connected {
            return;
        }
    }
}

/// Sends `body` as JSON to `subject` and returns the reply.
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: serde_json::Value,
) -> async_nats::Message {
    client
        .request(subject.to_owned(), body.to_string().into())
        .await
        .unwrap()
}

/// A running console bot: its stdin, and its stdout lines as they come.
pub struct ConsoleBot {
    /// The process.
    pub child: ChildGuard,
    /// What the console user types (`None` once closed).
    pub stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl ConsoleBot {
    /// Starts `rosey-bot` on `config` (written to a folder of its own, which relative paths
    /// in it, such as a chat log, resolve against), with its stdin and stdout piped.
    pub fn start(config: &serde_json::Value) -> ConsoleBot {
        Self::start_with(config, |cmd| cmd)
    }

    /// [`ConsoleBot::start`] with the command first passed through `wrap` (to set its
    /// environment); its stderr goes to [`ConsoleBot::log`].
    pub fn start_with(
        config: &serde_json::Value,
        wrap: impl FnOnce(Command) -> Command,
    ) -> ConsoleBot {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), config);
        let log = std::fs::File::create(dir.path().join("bot.log")).unwrap();
        let mut cmd = command("rosey-bot");
        cmd.arg("--config").arg(path);
        let mut cmd = wrap(cmd);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log);
        let mut child = ChildGuard::spawn("rosey-bot", cmd);
        let stdin = child.child_mut().stdin.take();
        let out = child.child_mut().stdout.take().unwrap();
        let rx = lines_of(out);
        ConsoleBot {
            child,
            stdin,
            stdout: rx,
            dir,
        }
    }

    /// Types one line (chat from the console user).
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The bot's next line on stdout (what it said), within [`WAIT`].
    pub fn next_stdout(&self) -> String {
        self.next_stdout_within(WAIT)
            .expect("the bot printed nothing in time")
    }

    /// The bot's next line on stdout within `wait`, if it said one.
    pub fn next_stdout_within(&self, wait: Duration) -> Option<String> {
        self.stdout.recv_timeout(wait).ok()
    }

    /// What the bot wrote on stderr so far (its diagnostics).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bot.log")).unwrap_or_default()
    }

    /// The chat log file (`logging.chat_log_file: "chat.log"`), empty when absent.
    pub fn chat_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chat.log")).unwrap_or_default()
    }
}
