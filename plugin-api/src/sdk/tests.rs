//! The SDK driven in process through the FFI types, as the runtime drives it, with a fake host.

use super::glue::{new_instance, Package};
use super::prelude::*;
use crate::actions::{SendChat, SendPm};
use crate::ffi::{
    FfiAnswer, FfiChannel, FfiError, FfiErrorKind, FfiMessage, HostHandle, HostHandle_TO,
    PluginBox, PluginInit,
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
    deferred: Mutex<Vec<(FfiMessage, u64, String)>>,
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
    fn request_deferred(
        &self,
        message: FfiMessage,
        timeout_ms: u64,
        token: RString,
    ) -> RResult<(), FfiError> {
        self.rec
            .deferred
            .lock()
            .unwrap()
            .push((message, timeout_ms, token.into_string()));
        ROk(())
    }
}

#[derive(Default)]
struct Echo {
    count: u32,
    kv_value: Option<String>,
    setup: Option<Setup>,
    answers: Vec<(String, Result<GetReply>)>,
}

impl Package for Echo {
    const NAME: &'static str = "echo";
    const VERSION: &'static str = "1.2.3";
    const DESCRIPTION: &'static str = "echoes";
}

impl Plugin for Echo {
    fn init(&mut self, ctx: &Context, setup: Setup) -> Result<()> {
        if setup.config.get("fail").is_some() {
            panic!("asked to fail");
        }
        assert_eq!(ctx.command_prefix(), setup.command_prefix);
        assert_eq!(ctx.channels(), setup.channels.as_slice());
        if let Some(state) = &setup.saved_state {
            self.count = state.decode_json(1)?.unwrap_or(0);
        }
        self.setup = Some(setup);
        Ok(())
    }

    fn commands(&self) -> Vec<CommandSpec> {
        vec![CommandSpec::new("echo", "echoes")
            .min_rank(1.0)
            .cooldown(Duration::from_secs(2))]
    }

    fn on_message(&mut self, ctx: &Context, msg: Message) -> Result<()> {
        if let Some(token) = msg.answer_token() {
            self.answers.push((token.to_owned(), msg.answer_json()));
            return Ok(());
        }
        let cmd = msg.command().ok_or_else(|| Error::msg("not a command"))?;
        match cmd.text.as_str() {
            "panic" => panic!("handler exploded"),
            "later" => ctx.request_json_later(
                &format!("{}#{}", cmd.user, self.count),
                "rosey.db.kv.echo.get",
                &crate::kv::Get {
                    channel: None,
                    key: "k".into(),
                },
                Duration::from_millis(1500),
            ),
            "answers" => {
                ANSWERS.with(|a| *a.borrow_mut() = self.answers.clone());
                Ok(())
            }
            "bot?" => {
                let bot = ctx.is_bot(&cmd.platform, &cmd.channel, "ROSEY");
                let elsewhere = ctx.is_bot(&cmd.platform, "attic", "rosey");
                ctx.reply(&cmd, format!("{bot} {elsewhere}"))
            }
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
        command_prefix: "$".into(),
        channels: vec![FfiChannel {
            platform: "cytube".into(),
            channel: "lobby".into(),
            bot_name: "rosey".into(),
        }]
        .into(),
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
    let error_answer = denied_reply();
    let (plugin, _) = build("{}", None, false, error_answer);
    let mut plugin = plugin.unwrap();
    let err = plugin.on_message(command_message("kv", false)).unwrap_err();
    assert_eq!(err.kind, FfiErrorKind::Nats);
    assert!(err.message.contains("not yours"), "{}", err.message);
}

#[test]
fn setup_carries_the_prefix_and_every_channel_with_the_bots_name() {
    let (plugin, rec) = build("{}", None, false, FfiMessage::default());
    let mut plugin = plugin.unwrap();
    plugin.on_message(command_message("bot?", false)).unwrap();
    let chat: SendChat = serde_json::from_slice(&rec.published.lock().unwrap()[0].payload).unwrap();
    // The bot's name matches without case in its own channel only.
    assert_eq!(chat.content, "true false");
    let setup = Setup {
        config: serde_json::json!({}),
        command_prefix: "!".into(),
        channels: vec![
            ChannelInfo {
                platform: "cytube".into(),
                channel: "a".into(),
                bot_name: "ann".into(),
            },
            ChannelInfo {
                platform: "cytube".into(),
                channel: "b".into(),
                bot_name: "bob".into(),
            },
        ],
        saved_state: None,
        generation: 1,
    };
    assert_eq!(setup.bot_name_in("cytube", "b"), Some("bob"));
    assert_eq!(setup.bot_name_in("console", "b"), None);
}

#[test]
fn deferred_requests_return_at_once_and_answers_arrive_as_messages() {
    let (plugin, rec) = build("{}", None, false, FfiMessage::default());
    let mut plugin = plugin.unwrap();
    plugin.on_message(command_message("later", false)).unwrap();
    let (request, timeout_ms, token) = rec.deferred.lock().unwrap()[0].clone();
    assert_eq!(request.subject.as_str(), "rosey.db.kv.echo.get");
    assert_eq!((timeout_ms, token.as_str()), (1500, "ann#0"));

    let reply = FfiMessage {
        payload: br#"{"found":true,"value":"v"}"#.to_vec().into(),
        ..FfiMessage::default()
    };
    plugin
        .on_answer(FfiAnswer {
            token: "ann#0".into(),
            subject: "rosey.db.kv.echo.get".into(),
            result: ROk(reply),
        })
        .unwrap();
    plugin
        .on_answer(FfiAnswer {
            token: "late".into(),
            subject: "rosey.db.kv.echo.get".into(),
            result: RErr(FfiError::new(FfiErrorKind::Timeout, "no answer")),
        })
        .unwrap();
    let error_reply = denied_reply();
    plugin
        .on_answer(FfiAnswer {
            token: "refused".into(),
            subject: "rosey.db.kv.echo.get".into(),
            result: ROk(error_reply),
        })
        .unwrap();
    // The plugin's state is checked through what it saves: answers were handled by Echo.
    let echo = answers_of(&mut plugin);
    assert_eq!(echo.len(), 3);
    assert_eq!(echo[0].0, "ann#0");
    assert_eq!(
        echo[0].1.as_ref().unwrap().value,
        Some(serde_json::json!("v"))
    );
    assert_eq!(echo[1].0, "late");
    assert_eq!(echo[1].1.as_ref().unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(
        echo[2].1.as_ref().unwrap_err().kind(),
        ErrorKind::Service(crate::ErrorCode::Denied)
    );

    // A message from a subscription is no answer (only `on_answer` makes one).
    let plain = Message::new("x", b"{}".to_vec());
    assert_eq!(plain.answer_token(), None);
    assert_eq!(
        plain.answer_json::<serde_json::Value>().unwrap_err().kind(),
        ErrorKind::Invalid
    );
}

/// The answers an `Echo` instance recorded, read back through a command that reports them.
fn answers_of(plugin: &mut PluginBox) -> Vec<(String, Result<GetReply>)> {
    ANSWERS.with(|a| a.borrow_mut().clear());
    plugin
        .on_message(command_message("answers", false))
        .unwrap();
    ANSWERS.with(|a| a.borrow().clone())
}

thread_local! {
    static ANSWERS: std::cell::RefCell<Vec<(String, Result<GetReply>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A service's error reply (`denied`), as the contract's envelope.
fn denied_reply() -> FfiMessage {
    FfiMessage {
        headers: vec![Tuple2(
            RString::from(crate::error::HEADER_CODE),
            RString::from("403"),
        )]
        .into(),
        payload: br#"{"error":{"code":"denied","message":"not yours"}}"#
            .to_vec()
            .into(),
        ..FfiMessage::default()
    }
}
