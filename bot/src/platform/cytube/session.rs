//! One open websocket to CyTube as a small state machine: the serve loop waits for the next
//! input (a frame, an action, silence) and hands it to one method, which says whether the
//! session goes on or how it ended.

use super::protocol::{self, Frame};
use super::{CytubePlatform, End, WsSink, WsStream};
use crate::platform::cytube::normalize::CytubeNormalizer;
use crate::platform::{ActionError, ActionRequest, PlatformAction, PlatformEvent};
use futures::{SinkExt, StreamExt};
use rosey_plugin_api::Timestamp;
use serde_json::{json, Value};
use std::ops::ControlFlow;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Whether a session goes on after an input, or how it ended.
type Step = ControlFlow<End>;

/// The state one connection carries between inputs.
pub(super) struct OpenSession<'a> {
    platform: &'a CytubePlatform,
    sink: &'a mut WsSink,
    events: &'a mpsc::Sender<PlatformEvent>,
    normalizer: &'a mut CytubeNormalizer,
    /// Set once the server confirmed the join; actions are refused until then.
    joined: &'a mut bool,
    /// How long the server may stay silent: the connect timeout until its handshake names
    /// its ping interval.
    watchdog: Duration,
    /// The reason of a `kick` event, reported when the server then closes the connection.
    kick_reason: Option<String>,
    /// Whether the channel password went out, so a second `needPassword` means it was wrong.
    password_sent: bool,
}

impl<'a> OpenSession<'a> {
    /// A session on a websocket that has just opened.
    pub(super) fn new(
        platform: &'a CytubePlatform,
        sink: &'a mut WsSink,
        events: &'a mpsc::Sender<PlatformEvent>,
        normalizer: &'a mut CytubeNormalizer,
        joined: &'a mut bool,
    ) -> Self {
        OpenSession {
            watchdog: platform.connect_timeout,
            platform,
            sink,
            events,
            normalizer,
            joined,
            kick_reason: None,
            password_sent: false,
        }
    }

    /// Serves the websocket until the connection ends.
    pub(super) async fn serve(
        mut self,
        stream: &mut WsStream,
        actions: &mut mpsc::Receiver<ActionRequest>,
    ) -> End {
        let mut deadline = Instant::now() + self.watchdog;
        loop {
            let step = tokio::select! {
                frame = stream.next() => {
                    let step = self.on_message(frame).await;
                    // Handing the frame over may have waited (backpressure from a full write
                    // backlog); frames already buffered must not be taken for silence.
                    deadline = Instant::now() + self.watchdog;
                    step
                }
                request = actions.recv() => self.on_action(request).await,
                () = tokio::time::sleep_until(deadline) => ControlFlow::Break(End::Lost(format!(
                    "no frame from the server for {:?}",
                    self.watchdog
                ))),
            };
            if let ControlFlow::Break(end) = step {
                return end;
            }
        }
    }

    /// Sends one text frame; a failed send ends the session.
    async fn send(&mut self, text: String) -> Step {
        match self.sink.send(WsMessage::text(text)).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(End::Lost(format!("websocket send failed: {e}"))),
        }
    }

    /// Hands an event to the core; a closed channel means the bot is shutting down.
    async fn emit(&mut self, event: PlatformEvent) -> Step {
        if matches!(event, PlatformEvent::Joined { .. }) {
            *self.joined = true;
        }
        match self.events.send(event).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(End::Shutdown),
        }
    }

    /// One websocket message: text is decoded, a close ends the session.
    async fn on_message(
        &mut self,
        message: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
    ) -> Step {
        let text = match message {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(_))) | None => {
                return ControlFlow::Break(match self.kick_reason.take() {
                    Some(r) => End::Kicked(r),
                    None => End::Lost("the server closed the connection".into()),
                });
            }
            Some(Ok(_)) => return ControlFlow::Continue(()),
            Some(Err(e)) => return ControlFlow::Break(End::Lost(format!("websocket error: {e}"))),
        };
        // A huge user list is read without a JSON tree (see `big_user_list`).
        if let Some(events) = self.normalizer.big_user_list(&text, Timestamp::now()) {
            drop(text);
            for event in events {
                self.emit(event).await?;
            }
            return ControlFlow::Continue(());
        }
        match protocol::parse(&text) {
            Ok(frame) => self.on_frame(frame).await,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable frame ignored");
                ControlFlow::Continue(())
            }
        }
    }

    /// One Engine.IO / Socket.IO frame.
    async fn on_frame(&mut self, frame: Frame) -> Step {
        match frame {
            Frame::Open(info) => {
                let interval = Duration::from_millis(info.ping_interval_ms);
                self.watchdog = self.platform.watchdog.max(interval.mul_f64(1.5));
                self.send(protocol::CONNECT.to_owned()).await
            }
            Frame::Connect(_) => self.join_and_login().await,
            Frame::ConnectError(message) => ControlFlow::Break(End::Lost(format!(
                "the server refused the connection: {message}"
            ))),
            Frame::Ping(payload) => self.send(format!("{}{payload}", protocol::PONG)).await,
            Frame::Disconnect => ControlFlow::Break(End::Kicked(
                self.kick_reason
                    .take()
                    .unwrap_or_else(|| "disconnected by the server".into()),
            )),
            Frame::Close => ControlFlow::Break(End::Lost("the server closed the session".into())),
            Frame::Event { name, data, .. } => self.on_event(name, data).await,
            Frame::Ack { .. } | Frame::Pong(_) | Frame::Noop => ControlFlow::Continue(()),
        }
    }

    /// After Socket.IO's connect: join the channel (with its password) and log in.
    async fn join_and_login(&mut self) -> Step {
        let platform = self.platform;
        let mut join = json!({"name": platform.channel});
        if let Some(pw) = &platform.channel_password {
            join["pw"] = json!(pw);
            self.password_sent = true;
        }
        self.send(protocol::encode_event("joinChannel", Some(&join)))
            .await?;
        let mut login = json!({"name": platform.username});
        if let Some(pw) = &platform.password {
            login["pw"] = json!(pw);
        }
        self.send(protocol::encode_event("login", Some(&login)))
            .await
    }

    /// One CyTube event: the session-level ones (kick, channel password) are handled here,
    /// then the raw event and its normalized form go to the core.
    async fn on_event(&mut self, name: String, data: Value) -> Step {
        // Normalized first (it reads the data), so the raw event takes the data without a
        // copy, and what the edge refuses is not passed on.
        let normalized = self.normalizer.normalize(&name, &data, Timestamp::now());
        let refused = self.normalizer.refused_last();
        match name.as_str() {
            "kick" => {
                let reason = data
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("kicked");
                tracing::warn!(reason, "kicked by the server");
                self.kick_reason = Some(reason.to_owned());
            }
            "needPassword" => self.on_need_password(&data).await?,
            _ => {}
        }
        if !refused {
            self.emit(PlatformEvent::Raw { event: name, data }).await?;
        }
        let mut failed_login = None;
        for event in normalized {
            if let PlatformEvent::LoginFailed { error } = &event {
                failed_login = Some(error.clone());
            }
            self.emit(event).await?;
        }
        match failed_login {
            Some(error) => ControlFlow::Break(End::LoginFailed(format!(
                "login as {} failed: {error}",
                self.platform.username
            ))),
            None => ControlFlow::Continue(()),
        }
    }

    /// `needPassword`: send the channel password once; asked again (`true`), it was wrong.
    async fn on_need_password(&mut self, data: &Value) -> Step {
        let platform = self.platform;
        let error = match &platform.channel_password {
            Some(pw) if !self.password_sent || *data != json!(true) => {
                self.password_sent = true;
                return self
                    .send(protocol::encode_event("channelPassword", Some(&json!(pw))))
                    .await;
            }
            Some(_) => "wrong channel password",
            None => "the channel needs a password (platform.channel_password)",
        };
        let error = error.to_owned();
        // The session ends either way; a closed event channel changes nothing.
        let _ = self
            .events
            .send(PlatformEvent::LoginFailed {
                error: error.clone(),
            })
            .await;
        ControlFlow::Break(End::LoginFailed(error))
    }

    /// An action from the core: sent once joined, refused before; `Disconnect` ends the
    /// session.
    async fn on_action(&mut self, request: Option<ActionRequest>) -> Step {
        let Some((action, done)) = request else {
            return ControlFlow::Break(End::Shutdown);
        };
        if action == PlatformAction::Disconnect {
            let _ = done.send(Ok(()));
            return ControlFlow::Break(End::Shutdown);
        }
        if !*self.joined {
            let _ = done.send(Err(ActionError::NotConnected));
            return ControlFlow::Continue(());
        }
        let text = match CytubePlatform::encode_action(&action) {
            Ok(text) => text,
            Err(e) => {
                let _ = done.send(Err(e));
                return ControlFlow::Continue(());
            }
        };
        let result = self
            .sink
            .send(WsMessage::text(text))
            .await
            .map_err(|e| ActionError::Transport(e.to_string()));
        let failed = result.is_err();
        let _ = done.send(result);
        if failed {
            return ControlFlow::Break(End::Lost("websocket send failed".into()));
        }
        ControlFlow::Continue(())
    }
}
