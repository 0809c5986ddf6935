//! The Engine.IO 4 / Socket.IO 4 text-frame codec CyTube speaks over its websocket.
//!
//! Pure functions only: one websocket text frame in, one [`Frame`] out, and the encoders for
//! what the bot sends. Each websocket frame carries exactly one Engine.IO packet (the `\x1e`
//! separator exists only in long-polling, which the bot does not use), and CyTube never sends
//! binary packets, so a hand-written codec is all the connector needs.

use serde_json::Value;
use thiserror::Error;

/// The Socket.IO CONNECT for the default namespace, sent after the Engine.IO open packet.
pub const CONNECT: &str = "40";
/// The Engine.IO pong, the answer to every server ping.
pub const PONG: &str = "3";
/// The Engine.IO ping (the client pings only in EIO 3; kept for the mock server).
pub const PING: &str = "2";
/// The Socket.IO DISCONNECT of the default namespace.
pub const DISCONNECT: &str = "41";

/// The server's session parameters from the Engine.IO open packet (`0{...}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInfo {
    /// The Engine.IO session id.
    pub sid: String,
    /// How often the server pings, in milliseconds.
    pub ping_interval_ms: u64,
    /// How long the server waits for a pong, in milliseconds.
    pub ping_timeout_ms: u64,
    /// The largest packet the server accepts.
    pub max_payload: u64,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `0{...}`: the Engine.IO session opened.
    Open(OpenInfo),
    /// `1`: the Engine.IO session closes.
    Close,
    /// `2`: a ping (with its optional probe payload).
    Ping(String),
    /// `3`: a pong.
    Pong(String),
    /// `6`: a no-op.
    Noop,
    /// `40` or `40{...}`: the namespace connected; the payload holds the socket id.
    Connect(Option<Value>),
    /// `41`: the server disconnected the namespace (after a kick).
    Disconnect,
    /// `42[...]` or `42<id>[...]`: an event with 0 or 1 argument (`Null` when absent).
    Event {
        /// The ack id when the sender wants an acknowledgement.
        ack_id: Option<u64>,
        /// The event name.
        name: String,
        /// Its argument, `Null` for bare events.
        data: Value,
    },
    /// `43<id>[...]`: the answer to an event we sent with an ack id.
    Ack {
        /// The id we sent.
        id: u64,
        /// The answer's arguments.
        args: Vec<Value>,
    },
    /// `44{...}` (EIO 4) or `44"..."` (EIO 3): the server refused the namespace connect.
    ConnectError(String),
}

/// A frame the codec cannot read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The frame was empty.
    #[error("empty frame")]
    Empty,
    /// The first character is not an Engine.IO packet type.
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownEnginePacket(char),
    /// The Socket.IO packet type is missing or unknown.
    #[error("unknown Socket.IO packet type in {0:?}")]
    UnknownSocketPacket(String),
    /// The JSON part did not parse or has the wrong shape.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which packet.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

fn malformed(what: &'static str, detail: impl Into<String>) -> FrameError {
    FrameError::Malformed {
        what,
        detail: detail.into(),
    }
}

/// Decodes one websocket text frame.
pub fn parse(frame: &str) -> Result<Frame, FrameError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(FrameError::Empty)?;
    let rest = chars.as_str();
    match kind {
        '0' => parse_open(rest),
        '1' => Ok(Frame::Close),
        '2' => Ok(Frame::Ping(rest.to_owned())),
        '3' => Ok(Frame::Pong(rest.to_owned())),
        '4' => parse_socket(rest),
        '6' => Ok(Frame::Noop),
        other => Err(FrameError::UnknownEnginePacket(other)),
    }
}

fn parse_open(json: &str) -> Result<Frame, FrameError> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| malformed("open packet", e.to_string()))?;
    let sid = v
        .get("sid")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("open packet", "no sid"))?
        .to_owned();
    let num = |key: &str, default: u64| v.get(key).and_then(Value::as_u64).unwrap_or(default);
    Ok(Frame::Open(OpenInfo {
        sid,
        ping_interval_ms: num("pingInterval", 25_000),
        ping_timeout_ms: num("pingTimeout", 20_000),
        max_payload: num("maxPayload", 1_000_000),
    }))
}

fn parse_socket(packet: &str) -> Result<Frame, FrameError> {
    let mut chars = packet.chars();
    let kind = chars
        .next()
        .ok_or_else(|| FrameError::UnknownSocketPacket(packet.to_owned()))?;
    let mut rest = chars.as_str();
    // A non-default namespace is written `/nsp,`; CyTube uses only "/", but skip it if present.
    if rest.starts_with('/') {
        rest = rest.split_once(',').map(|(_, r)| r).unwrap_or("");
    }
    match kind {
        '0' => {
            if rest.is_empty() {
                Ok(Frame::Connect(None))
            } else {
                let v = serde_json::from_str(rest)
                    .map_err(|e| malformed("connect packet", e.to_string()))?;
                Ok(Frame::Connect(Some(v)))
            }
        }
        '1' => Ok(Frame::Disconnect),
        '2' => {
            let (ack_id, json) = split_ack_id(rest);
            let args = parse_array(json, "event packet")?;
            let mut args = args.into_iter();
            let name = match args.next() {
                Some(Value::String(name)) => name,
                _ => return Err(malformed("event packet", "the first element is not a name")),
            };
            Ok(Frame::Event {
                ack_id,
                name,
                data: args.next().unwrap_or(Value::Null),
            })
        }
        '3' => {
            let (id, json) = split_ack_id(rest);
            let id = id.ok_or_else(|| malformed("ack packet", "no ack id"))?;
            Ok(Frame::Ack {
                id,
                args: parse_array(json, "ack packet")?,
            })
        }
        '4' => {
            let v: Value = serde_json::from_str(rest)
                .map_err(|e| malformed("connect error packet", e.to_string()))?;
            let message = match &v {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string()),
                other => other.to_string(),
            };
            Ok(Frame::ConnectError(message))
        }
        _ => Err(FrameError::UnknownSocketPacket(packet.to_owned())),
    }
}

/// Splits the optional decimal ack id in front of the JSON part.
fn split_ack_id(s: &str) -> (Option<u64>, &str) {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return (None, s);
    }
    match s[..digits].parse() {
        Ok(id) => (Some(id), &s[digits..]),
        Err(_) => (None, s),
    }
}

fn parse_array(json: &str, what: &'static str) -> Result<Vec<Value>, FrameError> {
    match serde_json::from_str(json) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(malformed(what, "not a JSON array")),
        Err(e) => Err(malformed(what, e.to_string())),
    }
}

/// `42["name",data]`, or `42["name"]` for a bare event.
pub fn encode_event(name: &str, data: Option<&Value>) -> String {
    encode_event_inner(None, name, data)
}

/// `42<id>["name",data]`: an event that asks for an acknowledgement.
pub fn encode_event_with_ack(id: u64, name: &str, data: Option<&Value>) -> String {
    encode_event_inner(Some(id), name, data)
}

fn encode_event_inner(id: Option<u64>, name: &str, data: Option<&Value>) -> String {
    let array = match data {
        Some(d) => Value::Array(vec![Value::String(name.to_owned()), d.clone()]),
        None => Value::Array(vec![Value::String(name.to_owned())]),
    };
    match id {
        Some(id) => format!("42{id}{array}"),
        None => format!("42{array}"),
    }
}

/// `43<id>[args...]`: our answer to a server event that asked for an acknowledgement.
pub fn encode_ack(id: u64, args: &[Value]) -> String {
    format!("43{id}{}", Value::Array(args.to_vec()))
}

/// `0{...}`: the open packet (for the mock server and tests).
pub fn encode_open(info: &OpenInfo) -> String {
    let v = serde_json::json!({
        "sid": info.sid,
        "upgrades": [],
        "pingInterval": info.ping_interval_ms,
        "pingTimeout": info.ping_timeout_ms,
        "maxPayload": info.max_payload,
    });
    format!("0{v}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn open_packet_from_the_reference() {
        let f = parse(r#"0{"sid":"BYBBpsidboE_AK4DAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":120000,"maxPayload":1048576}"#).unwrap();
        assert_eq!(
            f,
            Frame::Open(OpenInfo {
                sid: "BYBBpsidboE_AK4DAAAC".into(),
                ping_interval_ms: 25_000,
                ping_timeout_ms: 120_000,
                max_payload: 1_048_576,
            })
        );
        let again = parse(&encode_open(&OpenInfo {
            sid: "x".into(),
            ping_interval_ms: 1,
            ping_timeout_ms: 2,
            max_payload: 3,
        }))
        .unwrap();
        assert!(matches!(
            again,
            Frame::Open(OpenInfo {
                ping_timeout_ms: 2,
                ..
            })
        ));
    }

    #[test]
    fn connect_ack_and_bare_connect() {
        assert_eq!(
            parse(r#"40{"sid":"e4h93q_mLw-v4Z2sAAAD"}"#).unwrap(),
            Frame::Connect(Some(json!({"sid": "e4h93q_mLw-v4Z2sAAAD"})))
        );
        assert_eq!(parse("40").unwrap(), Frame::Connect(None));
        assert_eq!(parse("41").unwrap(), Frame::Disconnect);
    }

    #[test]
    fn events_with_and_without_data() {
        assert_eq!(
            parse(r#"42["rank",-1]"#).unwrap(),
            Frame::Event {
                ack_id: None,
                name: "rank".into(),
                data: json!(-1)
            }
        );
        assert_eq!(
            parse(r#"42["channelNotRegistered"]"#).unwrap(),
            Frame::Event {
                ack_id: None,
                name: "channelNotRegistered".into(),
                data: Value::Null
            }
        );
        assert_eq!(
            parse(r#"42["closePoll",null]"#).unwrap(),
            Frame::Event {
                ack_id: None,
                name: "closePoll".into(),
                data: Value::Null
            }
        );
        let f = parse(r#"42["chatMsg",{"username":"rawbot4","msg":"hello from rawbot4 (EIO=4)","meta":{},"time":1795727587322}]"#).unwrap();
        match f {
            Frame::Event { name, data, .. } => {
                assert_eq!(name, "chatMsg");
                assert_eq!(data["time"], json!(1_795_727_587_322_u64));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_with_ack_ids_and_acks() {
        assert_eq!(
            parse(r#"421["newPoll",{"title":"t"}]"#).unwrap(),
            Frame::Event {
                ack_id: Some(1),
                name: "newPoll".into(),
                data: json!({"title": "t"})
            }
        );
        assert_eq!(
            parse("431[{}]").unwrap(),
            Frame::Ack {
                id: 1,
                args: vec![json!({})]
            }
        );
        assert_eq!(
            parse(
                r#"433[{"error":{"message":"Poll timeout must be between 1 and 86400 seconds"}}]"#
            )
            .unwrap(),
            Frame::Ack {
                id: 3,
                args: vec![
                    json!({"error":{"message":"Poll timeout must be between 1 and 86400 seconds"}})
                ]
            }
        );
    }

    #[test]
    fn connect_errors_in_both_forms() {
        assert_eq!(
            parse(r#"44{"message":"Rate limit exceeded"}"#).unwrap(),
            Frame::ConnectError("Rate limit exceeded".into())
        );
        assert_eq!(
            parse(r#"44"Rate limit exceeded""#).unwrap(),
            Frame::ConnectError("Rate limit exceeded".into())
        );
    }

    #[test]
    fn heartbeat_frames() {
        assert_eq!(parse("2").unwrap(), Frame::Ping(String::new()));
        assert_eq!(parse("3").unwrap(), Frame::Pong(String::new()));
        assert_eq!(parse("2probe").unwrap(), Frame::Ping("probe".into()));
        assert_eq!(parse("1").unwrap(), Frame::Close);
        assert_eq!(parse("6").unwrap(), Frame::Noop);
    }

    #[test]
    fn encoders_match_the_reference() {
        assert_eq!(
            encode_event("joinChannel", Some(&json!({"name": "test"}))),
            r#"42["joinChannel",{"name":"test"}]"#
        );
        assert_eq!(encode_event("playNext", None), r#"42["playNext"]"#);
        assert_eq!(
            encode_event_with_ack(5, "newPoll", Some(&json!({}))),
            r#"425["newPoll",{}]"#
        );
        assert_eq!(encode_ack(1, &[json!({})]), "431[{}]");
        let round = parse(&encode_event(
            "chatMsg",
            Some(&json!({"msg": "a \"b\"", "meta": {}})),
        ))
        .unwrap();
        assert_eq!(
            round,
            Frame::Event {
                ack_id: None,
                name: "chatMsg".into(),
                data: json!({"msg": "a \"b\"", "meta": {}})
            }
        );
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        for bad in [
            "",
            "9",
            "4",
            "49",
            "42",
            "42{}",
            "42[1,2]",
            "42[\"x\"",
            "0{}",
            "0[]",
            "43[]",
            "44",
            "4é",
            "42\u{0}",
            "0{\"sid\":5}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let huge = format!("42[\"x\",\"{}\"]", "a".repeat(2_000_000));
        assert!(parse(&huge).is_ok());
        let deep = format!("42[\"x\",{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_err());
    }
}
