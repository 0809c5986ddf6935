//! The SDK driven in process through the FFI types, as the runtime drives it, with a fake host.

use super::glue::{new_instance, Package};
use super::prelude::*;
use crate::actions::{SendChat, SendPm};
use crate::ffi::{
    FfiError, FfiErrorKind, FfiMessage, HostHandle, HostHandle_TO, PluginBox, PluginInit,
};
use crate::kv::GetReply;
use crate::subjects;
use crate::{Timestamp, UserData};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{
    RBox, RErr, RNone, ROk, ROption, RResult, RSome, RString, RVec, Tuple2,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Recorder {
    published: Mutex<Vec<FfiMessage>>,
    requests: Mutex<Vec<FfiMessage>>,
    logs: Mutex<Vec<String>>,
}

struct FakeHost {
    rec: Arc<Recorder>,
    deny_publish: bool,
    answer: FfiMessage,
}

impl HostHandle for FakeHost {
    fn publish(&self, message: FfiMessage) -> RResult<(), FfiError> {
        if self.deny_publish {
            return RErr(FfiError::new(FfiErrorKind::Denied, "no"));
        }
        self.rec.published.lock().unwrap().push(message);
        ROk(())
    }
    fn request(&self, message: FfiMessage, _timeout_ms: u64) -> RResult<FfiMessage, FfiError> {
        self.rec.requests.lock().unwrap().push(message);
        ROk(self.answer.clone())
    }
    fn subscribe(&self, _subject: RString, _queue: ROption<RString>) -> RResult<u64, FfiError> {
        ROk(7)
    }
    fn unsubscribe(&self, _id: u64) -> RResult<(), FfiError> {
        ROk(())
    }
    fn log(&self, _level: LogLevel, message: RString) {
        self.rec.logs.lock().unwrap().push(message.into_string());
    }
}

#[derive(Default)]
struct Echo {
    count: u32,
    kv_value: Option<String>,
}

impl Package for Echo {
    const NAME: &'static str = "echo";
    const VERSION: &'static str = "1.2.3";
    const DESCRIPTION: &'static str = "echoes";
}

impl Plugin for Echo {
    fn init(&mut self, _ctx: &Context, setup: Setup) -> Result<()> {
        if setup.config.get("fail").is_some() {
            panic!("asked to fail");
        }
        if let Some(state) = setup.saved_state {
            self.count = state.decode_json(1)?.unwrap_or(0);
        }
        Ok(())
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![CommandSpec::new("echo", "echoes")
            .min_rank(1.0)
            .cooldown(Duration::from_secs(2))]
    }

    fn on_message(&mut self, ctx: &Context, msg: Message) -> Result<()> {
        let cmd = msg.command().ok_or_else(|| Error::msg("not a command"))?;
        match cmd.text.as_str() {
            "panic" => panic!("handler exploded"),
            "kv" => {
                self.kv_value = ctx.kv().get::<String>("k")?;
                Ok(())
            }
            _ => {
                self.count += 1;
                ctx.reply(&cmd, format!("{} #{}", cmd.text, self.count))
            }
        }
    }

    fn save_state(&mut self) -> Result<Option<SavedState>> {
        Ok(Some(SavedState::json(1, &self.count)?))
    }
}

fn build(
    config: &str,
    saved: Option<Vec<u8>>,
    deny_publish: bool,
    answer: FfiMessage,
) -> (RResult<PluginBox, FfiError>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let host = FakeHost {
        rec: rec.clone(),
        deny_publish,
        answer,
    };
    let init = PluginInit {
        host: HostHandle_TO::from_ptr(RBox::new(host), TD_Opaque),
        name: "echo".into(),
        config_json: config.into(),
        bot_name: "rosey".into(),
        channel: "lobby".into(),
        saved_state: match saved {
            Some(b) => RSome(RVec::from(b)),
            None => RNone,
        },
        generation: 1,
    };
    (new_instance::<Echo>(init), rec)
}

fn command_message(text: &str, is_pm: bool) -> FfiMessage {
    let cmd = Command {
        command: "echo".into(),
        args: text.split_whitespace().map(str::to_owned).collect(),
        text: text.into(),
        raw: format!("!echo {text}"),
        user: "ann".into(),
        user_data: UserData::new("ann", 1.0),
        is_pm,
        platform: "cytube".into(),
        channel: "lobby".into(),
        timestamp: Timestamp::now(),
    };
    FfiMessage {
        subject: subjects::commands::command("echo").unwrap().into(),
        payload: serde_json::to_vec(&cmd).unwrap().into(),
        ..FfiMessage::default()
    }
}

#[test]
fn metadata_comes_from_the_package_and_commands() {
    let (plugin, _) = build("{}", None, false, FfiMessage::default());
    let plugin = plugin.unwrap();
    let meta = plugin.metadata();
    assert_eq!(meta.name.as_str(), "echo");
    assert_eq!(meta.version.as_str(), "1.2.3");
    assert_eq!(meta.commands.len(), 1);
    assert_eq!(meta.commands[0].min_rank, 1.0);
    assert_eq!(meta.commands[0].cooldown_ms, 2000);
}

#[test]
fn replies_go_where_the_command_came_from_and_state_carries_over() {
    let (plugin, rec) = build("{}", None, false, FfiMessage::default());
    let mut plugin = plugin.unwrap();
    plugin.on_message(command_message("hi", false)).unwrap();
    plugin.on_message(command_message("psst", true)).unwrap();
    let published = rec.published.lock().unwrap().clone();
    assert_eq!(
        published[0].subject.as_str(),
        "rosey.platform.cytube.send.chat"
    );
    let chat: SendChat = serde_json::from_slice(&published[0].payload).unwrap();
    assert_eq!(
        (chat.channel.as_str(), chat.content.as_str()),
        ("lobby", "hi #1")
    );
    assert_eq!(
        published[1].subject.as_str(),
        "rosey.platform.cytube.send.pm"
    );
    let pm: SendPm = serde_json::from_slice(&published[1].payload).unwrap();
    assert_eq!((pm.to.as_str(), pm.content.as_str()), ("ann", "psst #2"));

    let saved = plugin.save_state().unwrap().into_vec();
    let (next, rec) = build("{}", Some(saved), false, FfiMessage::default());
    let mut next = next.unwrap();
    next.on_message(command_message("again", false)).unwrap();
    let chat: SendChat = serde_json::from_slice(&rec.published.lock().unwrap()[0].payload).unwrap();
    assert_eq!(chat.content, "again #3");
}

#[test]
fn panics_become_error_values() {
    let (plugin, _) = build("{}", None, false, FfiMessage::default());
    let mut plugin = plugin.unwrap();
    let err = plugin
        .on_message(command_message("panic", false))
        .unwrap_err();
    assert_eq!(err.kind, FfiErrorKind::Panic);
    assert!(err.message.contains("handler exploded"), "{}", err.message);

    let (failed, _) = build(r#"{"fail": true}"#, None, false, FfiMessage::default());
    let err = failed.err().unwrap();
    assert_eq!(err.kind, FfiErrorKind::Panic);
    assert!(err.message.contains("asked to fail"));

    let (bad_config, _) = build("{not json", None, false, FfiMessage::default());
    assert_eq!(bad_config.err().unwrap().kind, FfiErrorKind::Invalid);
}

#[test]
fn host_errors_and_bad_state_are_reported_not_fatal() {
    let (plugin, _) = build("{}", None, true, FfiMessage::default());
    let mut plugin = plugin.unwrap();
    let err = plugin.on_message(command_message("hi", false)).unwrap_err();
    assert_eq!(err.kind, FfiErrorKind::Denied);

    // Garbage state is logged and ignored: the plugin starts fresh.
    let (plugin, rec) = build(
        "{}",
        Some(b"garbage".to_vec()),
        false,
        FfiMessage::default(),
    );
    let mut plugin = plugin.unwrap();
    assert!(rec.logs.lock().unwrap()[0].contains("ignoring saved state"));
    plugin.on_message(command_message("x", false)).unwrap();
    let chat: SendChat = serde_json::from_slice(&rec.published.lock().unwrap()[0].payload).unwrap();
    assert_eq!(chat.content, "x #1");
}

#[test]
fn kv_helper_speaks_the_contract() {
    let answer = FfiMessage {
        payload: serde_json::to_vec(&GetReply {
            found: true,
            value: Some(serde_json::json!("stored")),
        })
        .unwrap()
        .into(),
        ..FfiMessage::default()
    };
    let (plugin, rec) = build("{}", None, false, answer);
    let mut plugin = plugin.unwrap();
    plugin.on_message(command_message("kv", false)).unwrap();
    let req = rec.requests.lock().unwrap()[0].clone();
    assert_eq!(req.subject.as_str(), "rosey.db.kv.echo.get");
    assert_eq!(&req.payload[..], br#"{"key":"k"}"#);

    // An error reply becomes ErrorKind::Service with the contract's code.
    let error_answer = FfiMessage {
        headers: vec![Tuple2(
            RString::from(crate::error::HEADER_CODE),
            RString::from("403"),
        )]
        .into(),
        payload: br#"{"error":{"code":"denied","message":"not yours"}}"#
            .to_vec()
            .into(),
        ..FfiMessage::default()
    };
    let (plugin, _) = build("{}", None, false, error_answer);
    let mut plugin = plugin.unwrap();
    let err = plugin.on_message(command_message("kv", false)).unwrap_err();
    assert_eq!(err.kind, FfiErrorKind::Nats);
    assert!(err.message.contains("not yours"), "{}", err.message);
}
