//! Shared by the `bot_*` tests: writing a bot configuration, launching `rosey-bot` on it, and
//! reading what the bot publishes on NATS.
#![allow(dead_code)]

use futures::StreamExt;
use rosey_plugin_api::events::{BotStatus, Event};
use rosey_tests::{command, ChildGuard, NatsServer};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
