//! Answers to the NATS service-discovery subjects (`$SRV.PING|INFO|STATS[.<name>[.<id>]]`) for
//! services that answer them by hand (the bot, rosey-web), so `rosey status`, rosey-web and
//! `nats micro` find every Rosey process, however many instances run.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Which discovery question was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `$SRV.PING`: who is there.
    Ping,
    /// `$SRV.INFO`: endpoints and metadata.
    Info,
    /// `$SRV.STATS`: counters.
    Stats,
}

/// What a service says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The service name (`rosey-bot`).
    pub name: String,
    /// This instance's id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// One line on what it does.
    #[serde(default)]
    pub description: String,
    /// Free-form string metadata (a bot's `platform` and `channel`).
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

/// The verb a discovery subject asks of the service `name` with instance `id`, or `None` when
/// the subject is for another service or instance (or is not a discovery subject).
pub fn addressed(subject: &str, name: &str, id: &str) -> Option<Verb> {
    let mut tokens = subject.split('.');
    if tokens.next()? != "$SRV" {
        return None;
    }
    let verb = match tokens.next()? {
        "PING" => Verb::Ping,
        "INFO" => Verb::Info,
        "STATS" => Verb::Stats,
        _ => return None,
    };
    if let Some(target) = tokens.next() {
        if target != name {
            return None;
        }
    }
    if let Some(target) = tokens.next() {
        if target != id {
            return None;
        }
    }
    if tokens.next().is_some() {
        return None;
    }
    Some(verb)
}

/// The answer body for `verb`: the micro protocol's fields, plus `endpoints` (the subjects the
/// service serves) for INFO and `started` and `data` for STATS.
pub fn answer(
    identity: &Identity,
    verb: Verb,
    endpoints: &[&str],
    started_rfc3339: &str,
    data: Value,
) -> Value {
    let mut body = json!({
        "name": identity.name,
        "id": identity.id,
        "version": identity.version,
        "metadata": identity.metadata,
    });
    let Some(obj) = body.as_object_mut() else {
        return body;
    };
    match verb {
        Verb::Ping => {
            obj.insert("type".into(), "io.nats.micro.v1.ping_response".into());
        }
        Verb::Info => {
            obj.insert("type".into(), "io.nats.micro.v1.info_response".into());
            obj.insert("description".into(), identity.description.clone().into());
            let list: Vec<Value> = endpoints
                .iter()
                .map(|s| json!({"name": s, "subject": s, "queue_group": "", "metadata": {}}))
                .collect();
            obj.insert("endpoints".into(), list.into());
        }
        Verb::Stats => {
            obj.insert("type".into(), "io.nats.micro.v1.stats_response".into());
            obj.insert("started".into(), started_rfc3339.into());
            obj.insert("endpoints".into(), Value::Array(Vec::new()));
            obj.insert("data".into(), data);
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_address_the_right_instance() {
        assert_eq!(addressed("$SRV.PING", "rosey-bot", "a1"), Some(Verb::Ping));
        assert_eq!(
            addressed("$SRV.INFO.rosey-bot", "rosey-bot", "a1"),
            Some(Verb::Info)
        );
        assert_eq!(
            addressed("$SRV.STATS.rosey-bot.a1", "rosey-bot", "a1"),
            Some(Verb::Stats)
        );
        assert_eq!(
            addressed("$SRV.STATS.rosey-bot.b2", "rosey-bot", "a1"),
            None
        );
        assert_eq!(addressed("$SRV.PING.rosey-db", "rosey-bot", "a1"), None);
        assert_eq!(addressed("$SRV.KICK", "rosey-bot", "a1"), None);
        assert_eq!(addressed("rosey.events.message", "rosey-bot", "a1"), None);
    }

    #[test]
    fn answers_carry_identity_and_metadata() {
        let mut metadata = Map::new();
        metadata.insert("channel".into(), "lounge".into());
        let id = Identity {
            name: "rosey-bot".into(),
            id: "a1".into(),
            version: "0.1.0".into(),
            description: "bot".into(),
            metadata,
        };
        let info = answer(&id, Verb::Info, &["rosey.bot.snapshot"], "", Value::Null);
        assert_eq!(info["metadata"]["channel"], "lounge");
        assert_eq!(info["endpoints"][0]["subject"], "rosey.bot.snapshot");
        let stats = answer(
            &id,
            Verb::Stats,
            &[],
            "2026-01-01T00:00:00Z",
            json!({"x": 1}),
        );
        assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
        assert_eq!(stats["data"]["x"], 1);
    }
}
