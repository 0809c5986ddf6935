//! `rosey migrate-config`: converts the original Rosey's configuration files (its flat v1
//! format and its own "2.0" format) to ours, mapping every key and reporting, never silently
//! dropping, the ones it cannot map.

use serde_json::{json, Map, Value};
use thiserror::Error;

/// Which format a configuration file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// The original's flat v1 file (`domain`, `channel`, `user`, `shell`, `db`, ...).
    OriginalV1,
    /// The original's own "2.0" file (`platforms[]`, `nats.url`, `plugins.enabled: true`).
    OriginalV2,
    /// Already ours: nothing to do.
    Current,
}

/// The converted configuration and what the conversion could not carry over exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// The format the input was in.
    pub source: SourceFormat,
    /// The configuration in our format (the input itself when it was already ours).
    pub output: Value,
    /// One line per key that was dropped or changed in meaning, naming the key path.
    pub warnings: Vec<String>,
}

/// The input is not a configuration this command understands.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MigrateError {
    /// The top level is not a JSON object.
    #[error("the configuration must be a JSON object")]
    NotAnObject,
}

/// Tells the original's formats from ours: the original is recognised by `platforms`,
/// `nats.url` or a boolean `plugins.enabled`; a file without `version` and with flat platform
/// keys is v1.
pub fn detect(config: &Map<String, Value>) -> SourceFormat {
    let nats_url = config
        .get("nats")
        .and_then(Value::as_object)
        .is_some_and(|n| n.contains_key("url"));
    let bool_plugins = config
        .get("plugins")
        .and_then(Value::as_object)
        .and_then(|p| p.get("enabled"))
        .is_some_and(Value::is_boolean);
    if config.contains_key("platforms") || nats_url || bool_plugins {
        return SourceFormat::OriginalV2;
    }
    const V1_KEYS: [&str; 6] = ["domain", "channel", "user", "shell", "db", "log_level"];
    let flat = V1_KEYS.iter().any(|k| config.contains_key(*k));
    if flat && !config.contains_key("platform") {
        SourceFormat::OriginalV1
    } else {
        SourceFormat::Current
    }
}

/// Converts `input` to our format.
pub fn migrate(input: &Value) -> Result<Migration, MigrateError> {
    let config = input.as_object().ok_or(MigrateError::NotAnObject)?;
    let source = detect(config);
    let mut m = Migrator::default();
    match source {
        SourceFormat::Current => {
            return Ok(Migration {
                source,
                output: input.clone(),
                warnings: vec![],
            })
        }
        SourceFormat::OriginalV1 => m.read_v1(config),
        SourceFormat::OriginalV2 => m.read_v2(config),
    }
    let warnings = std::mem::take(&mut m.warnings);
    Ok(Migration {
        source,
        output: m.finish(),
        warnings,
    })
}

/// Builds the output section by section.
#[derive(Default)]
struct Migrator {
    platform: Map<String, Value>,
    nats: Map<String, Value>,
    database: Map<String, Value>,
    plugins: Map<String, Value>,
    shell: Map<String, Value>,
    logging: Map<String, Value>,
    verbatim: Map<String, Value>,
    warnings: Vec<String>,
}

impl Migrator {
    fn warn(&mut self, text: String) {
        self.warnings.push(text);
    }

    fn read_v1(&mut self, config: &Map<String, Value>) {
        self.platform.insert("type".into(), json!("cytube"));
        for (key, value) in config {
            match key.as_str() {
                "domain" => self.domain(key, value),
                "channel" => self.channel(key, value),
                "user" => self.user(key, value),
                "response_timeout" | "restart_delay" | "retry_delay" => {
                    self.seconds_into_platform(key, key, value)
                }
                "retry" => self.platform_verbatim(key, key, value),
                "proxy" => self.platform_verbatim(key, key, value),
                "log_level" => self.log_level(key, value),
                "chat_log_file" | "media_log_file" | "llm_log_file" => {
                    self.logging_path(key, key, value)
                }
                "shell" => self.shell_v1(value),
                "db" => self.db_path(key, value),
                "llm" => self.llm(value),
                "web" | "metrics" => {
                    self.verbatim.insert(key.clone(), value.clone());
                }
                "_comment" | "_note" => {
                    self.verbatim.insert(key.clone(), value.clone());
                }
                "plugins" => self.plugins_section(key, value),
                _ => self.warn(format!("{key}: unknown key, not carried over")),
            }
        }
    }

    fn read_v2(&mut self, config: &Map<String, Value>) {
        for (key, value) in config {
            match key.as_str() {
                "version" => {}
                "platforms" => self.platforms(value),
                // Our own `platform` object next to `platforms` would be ambiguous.
                "platform" => self.warn(
                    "platform: ignored in favour of platforms[0] (the file mixes formats)".into(),
                ),
                "nats" => self.nats_v2(value),
                "database" => self.database_v2(value),
                "shell" => self.shell_v2(value),
                "logging" => self.logging_v2(value),
                "plugins" => self.plugins_section(key, value),
                "llm" => self.llm(value),
                "web" | "metrics" => {
                    self.verbatim.insert(key.clone(), value.clone());
                }
                "_comment" | "_note" => {
                    self.verbatim.insert(key.clone(), value.clone());
                }
                _ => self.warn(format!("{key}: unknown key, not carried over")),
            }
        }
        if !self.platform.contains_key("type") {
            self.platform.insert("type".into(), json!("cytube"));
        }
    }

    /// The `llm` block carries over whole (our `llm` section keeps the original's keys); keys
    /// written in the file are kept but pointed out, since `api_key_env` keeps them out of it.
    fn llm(&mut self, value: &Value) {
        for provider in ["openai", "openrouter"] {
            if value[provider]["api_key"].is_string() {
                self.warn(format!(
                    "llm.{provider}.api_key: carried over as written; consider \
                     llm.{provider}.api_key_env or api_key_file to keep the key out of the file"
                ));
            }
        }
        self.verbatim.insert("llm".to_owned(), value.clone());
    }

    fn domain(&mut self, path: &str, value: &Value) {
        match value.as_str() {
            Some(d) if d.starts_with("http://") || d.starts_with("https://") => {
                self.platform.insert("domain".into(), json!(d));
            }
            Some(d) if !d.is_empty() => {
                self.warn(format!("{path}: {d:?} has no scheme; assumed https://"));
                self.platform
                    .insert("domain".into(), json!(format!("https://{d}")));
            }
            _ => self.warn(format!("{path}: not a URL string, not carried over")),
        }
    }

    /// `channel` as a name or `[name, password]`.
    fn channel(&mut self, path: &str, value: &Value) {
        match value {
            Value::String(name) => {
                self.platform.insert("channel".into(), json!(name));
            }
            Value::Array(parts) => {
                match parts.first().and_then(Value::as_str) {
                    Some(name) => {
                        self.platform.insert("channel".into(), json!(name));
                    }
                    None => self.warn(format!("{path}[0]: channel name missing")),
                }
                match parts.get(1) {
                    Some(Value::String(pw)) if !pw.is_empty() => {
                        self.platform.insert("channel_password".into(), json!(pw));
                    }
                    Some(Value::Null) | None => {}
                    Some(Value::String(_)) => {}
                    Some(_) => self.warn(format!("{path}[1]: password is not a string, dropped")),
                }
                if parts.len() > 2 {
                    self.warn(format!(
                        "{path}: extra elements after [name, password] dropped"
                    ));
                }
            }
            Value::Null => self.warn(format!("{path}: null, no channel set")),
            _ => self.warn(format!("{path}: not a name or [name, password], dropped")),
        }
    }

    /// `user` as a name, `[name, password]`, or null (anonymous).
    fn user(&mut self, path: &str, value: &Value) {
        let mut creds = Map::new();
        match value {
            Value::String(name) => {
                creds.insert("username".into(), json!(name));
            }
            Value::Array(parts) => {
                if let Some(name) = parts.first().and_then(Value::as_str) {
                    creds.insert("username".into(), json!(name));
                } else {
                    self.warn(format!("{path}[0]: user name missing"));
                }
                match parts.get(1) {
                    Some(Value::String(pw)) if !pw.is_empty() => {
                        creds.insert("password".into(), json!(pw));
                    }
                    Some(Value::String(_)) | Some(Value::Null) | None => {}
                    Some(_) => self.warn(format!("{path}[1]: password is not a string, dropped")),
                }
            }
            Value::Null => {
                self.warn(format!(
                    "{path}: null (anonymous) has no equivalent; the bot logs in as a guest \
                     named by platform.credentials.username (default \"rosey\")"
                ));
                return;
            }
            _ => {
                self.warn(format!("{path}: not a name or [name, password], dropped"));
                return;
            }
        }
        if !creds.is_empty() {
            self.platform
                .insert("credentials".into(), Value::Object(creds));
        }
    }

    fn seconds_into_platform(&mut self, path: &str, key: &str, value: &Value) {
        match value {
            Value::Number(n) if n.as_f64().is_some_and(|f| f >= 0.0) => {
                self.platform.insert(key.into(), value.clone());
            }
            Value::Null if key == "restart_delay" => self.warn(format!(
                "{path}: null meant \"never reconnect\"; Rosey always reconnects, with backoff"
            )),
            Value::Null => {}
            _ => self.warn(format!("{path}: not a number of seconds, dropped")),
        }
    }

    fn platform_verbatim(&mut self, _path: &str, key: &str, value: &Value) {
        if !value.is_null() {
            self.platform.insert(key.into(), value.clone());
        }
    }

    fn log_level(&mut self, path: &str, value: &Value) {
        match value.as_str() {
            Some(level) => {
                let lower = level.to_ascii_lowercase();
                let mapped = match lower.as_str() {
                    "warning" => "warn",
                    "critical" | "fatal" => "error",
                    other => other,
                };
                self.logging.insert("level".into(), json!(mapped));
            }
            None => self.warn(format!("{path}: not a level name, dropped")),
        }
    }

    fn logging_path(&mut self, path: &str, key: &str, value: &Value) {
        match value {
            Value::String(p) => {
                self.logging.insert(key.into(), json!(p));
            }
            Value::Null => {}
            _ => self.warn(format!("{path}: not a path, dropped")),
        }
    }

    /// v1 `shell`: `"host:port"`, a bare port or host, or null (disabled). The original crashed
    /// on null.
    fn shell_v1(&mut self, value: &Value) {
        match value {
            Value::Null => {
                self.shell.insert("enabled".into(), json!(false));
            }
            Value::String(s) => {
                self.shell.insert("enabled".into(), json!(true));
                match s.rsplit_once(':') {
                    Some((host, port)) => {
                        if !host.is_empty() {
                            self.shell.insert("host".into(), json!(host));
                        }
                        match port.parse::<u16>() {
                            Ok(p) => {
                                self.shell.insert("port".into(), json!(p));
                            }
                            Err(_) => self.warn(format!("shell: port {port:?} is not a number")),
                        }
                    }
                    None => match s.parse::<u16>() {
                        Ok(p) => {
                            self.shell.insert("port".into(), json!(p));
                        }
                        Err(_) => {
                            self.shell.insert("host".into(), json!(s));
                        }
                    },
                }
                self.warn(
                    "shell: the PM shell needs no TCP port in Rosey; host and port are kept \
                     for reference only"
                        .into(),
                );
            }
            _ => self.warn("shell: not \"host:port\" or null, dropped".into()),
        }
    }

    fn db_path(&mut self, path: &str, value: &Value) {
        match value {
            Value::String(p) => {
                self.database.insert("path".into(), json!(p));
                self.database.insert("service_enabled".into(), json!(true));
            }
            Value::Null => {}
            _ => self.warn(format!("{path}: not a path, dropped")),
        }
    }

    /// Every enabled entry of `platforms[]`: one becomes `platform.channel` as before, several
    /// become `platform.channels` (the first entry's server, account and timing are the
    /// section's; an entry that differs keeps its own server and account).
    fn platforms(&mut self, value: &Value) {
        let Some(list) = value.as_array() else {
            self.warn("platforms: not a list, dropped".into());
            return;
        };
        let mut entries = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            let Some(entry) = entry.as_object() else {
                self.warn(format!("platforms[{i}]: not an object, dropped"));
                continue;
            };
            if entry.get("enabled") == Some(&Value::Bool(false)) {
                self.warn(format!(
                    "platforms[{i}].enabled: false; this channel is not carried over"
                ));
                continue;
            }
            entries.push((i, entry));
        }
        if entries.is_empty() {
            self.warn("platforms: no enabled entry, no platform set".into());
            return;
        }
        let outer = std::mem::take(&mut self.platform);
        let mut mapped = Vec::new();
        for (i, entry) in entries {
            self.platform = Map::new();
            self.platform_entry(i, entry);
            mapped.push((i, std::mem::take(&mut self.platform)));
        }
        self.platform = outer;
        let mut mapped = mapped.into_iter();
        let Some((_, first)) = mapped.next() else {
            return;
        };
        let rest: Vec<_> = mapped.collect();
        let first_channel = first.get("channel").cloned();
        let first_password = first.get("channel_password").cloned();
        for (key, v) in &first {
            if rest.is_empty() || !matches!(key.as_str(), "channel" | "channel_password") {
                self.platform.insert(key.clone(), v.clone());
            }
        }
        if rest.is_empty() {
            return;
        }
        let mut channels = Vec::new();
        let mut first_entry = Map::new();
        match first_channel {
            Some(name) => {
                first_entry.insert("name".into(), name);
            }
            None => self.warn("platforms[0]: no channel; not listed".into()),
        }
        if let Some(pw) = first_password {
            first_entry.insert("channel_password".into(), pw);
        }
        if first_entry.contains_key("name") {
            channels.push(Value::Object(first_entry));
        }
        for (i, other) in rest {
            let Some(name) = other.get("channel").cloned() else {
                self.warn(format!("platforms[{i}]: no channel; not listed"));
                continue;
            };
            let mut entry = Map::new();
            entry.insert("name".into(), name);
            for (key, v) in &other {
                match key.as_str() {
                    "channel" => {}
                    "channel_password" => {
                        entry.insert(key.clone(), v.clone());
                    }
                    "domain" | "credentials" => {
                        if first.get(key) != Some(v) {
                            entry.insert(key.clone(), v.clone());
                        }
                    }
                    _ => {
                        if first.get(key) != Some(v) {
                            self.warn(format!(
                                "platforms[{i}].{key}: differs from the first channel's; one \
                                 value serves every channel, the first's is kept"
                            ));
                        }
                    }
                }
            }
            channels.push(Value::Object(entry));
        }
        self.platform
            .insert("channels".into(), Value::Array(channels));
    }

    /// One entry of `platforms[]`, into `self.platform`.
    fn platform_entry(&mut self, i: usize, entry: &Map<String, Value>) {
        for (key, v) in entry {
            let path = format!("platforms[{i}].{key}");
            match key.as_str() {
                "type" => match v.as_str() {
                    Some("cytube") => {
                        self.platform.insert("type".into(), json!("cytube"));
                    }
                    _ => self.warn(format!("{path}: {v} is not supported, cytube assumed")),
                },
                "name" | "enabled" => {}
                "domain" => self.domain(&path, v),
                "channel" => self.channel(&path, v),
                "user" => self.user(&path, v),
                "response_timeout" | "restart_delay" | "retry_delay" => {
                    self.seconds_into_platform(&path, key, v)
                }
                "retry" | "proxy" => self.platform_verbatim(&path, key, v),
                _ => self.warn(format!("{path}: unknown key, not carried over")),
            }
        }
    }

    fn nats_v2(&mut self, value: &Value) {
        let Some(nats) = value.as_object() else {
            self.warn("nats: not an object, dropped".into());
            return;
        };
        for (key, v) in nats {
            let path = format!("nats.{key}");
            match key.as_str() {
                "url" | "server" => {
                    self.nats.insert("server".into(), v.clone());
                }
                "connection_timeout" => {
                    self.nats.insert("connect_timeout".into(), v.clone());
                }
                "max_reconnect_attempts" | "max_reconnects" => {
                    self.nats.insert("max_reconnects".into(), v.clone());
                }
                "reconnect_delay" | "client_id" | "user" | "password" | "token" | "creds_file" => {
                    self.nats.insert(key.clone(), v.clone());
                }
                _ => self.warn(format!("{path}: unknown key, not carried over")),
            }
        }
    }

    fn database_v2(&mut self, value: &Value) {
        let Some(db) = value.as_object() else {
            self.warn("database: not an object, dropped".into());
            return;
        };
        for (key, v) in db {
            match key.as_str() {
                "path" => self.db_path("database.path", v),
                "run_as_service" | "service_enabled" => {
                    self.database.insert("service_enabled".into(), v.clone());
                }
                _ => self.warn(format!("database.{key}: unknown key, not carried over")),
            }
        }
    }

    fn shell_v2(&mut self, value: &Value) {
        match value {
            Value::Null => {
                self.shell.insert("enabled".into(), json!(false));
            }
            Value::String(_) => self.shell_v1(value),
            Value::Object(shell) => {
                for (key, v) in shell {
                    match key.as_str() {
                        "enabled" | "host" | "port" => {
                            self.shell.insert(key.clone(), v.clone());
                        }
                        _ => self.warn(format!("shell.{key}: unknown key, not carried over")),
                    }
                }
            }
            _ => self.warn("shell: not an object, dropped".into()),
        }
    }

    fn logging_v2(&mut self, value: &Value) {
        let Some(logging) = value.as_object() else {
            self.warn("logging: not an object, dropped".into());
            return;
        };
        for (key, v) in logging {
            let path = format!("logging.{key}");
            match key.as_str() {
                "level" => self.log_level(&path, v),
                "chat_log_file" | "media_log_file" | "llm_log_file" => {
                    self.logging_path(&path, key, v)
                }
                _ => self.warn(format!("{path}: unknown key, not carried over")),
            }
        }
    }

    fn plugins_section(&mut self, path: &str, value: &Value) {
        let Some(plugins) = value.as_object() else {
            self.warn(format!("{path}: not an object, dropped"));
            return;
        };
        for (key, v) in plugins {
            let path = format!("{path}.{key}");
            match (key.as_str(), v) {
                ("enabled", Value::Bool(on)) => {
                    self.plugins.insert("enabled".into(), json!([]));
                    if *on {
                        self.warn(format!(
                            "{path}: true switched the plugin system on; Rosey lists the plugins \
                             to load instead: add their names to plugins.enabled (for example \
                             [\"markov\", \"quotes\"])"
                        ));
                    }
                }
                ("enabled", Value::Array(_)) => {
                    self.plugins.insert("enabled".into(), v.clone());
                }
                ("directory", Value::String(_)) => {
                    self.plugins.insert("directory".into(), v.clone());
                }
                ("auto_reload" | "hot_reload", Value::Bool(_)) => {
                    self.plugins.insert("hot_reload".into(), v.clone());
                }
                _ => self.warn(format!("{path}: cannot be mapped, not carried over")),
            }
        }
    }

    fn finish(self) -> Value {
        let mut out = Map::new();
        out.insert("version".into(), json!("2.0"));
        let sections = [
            ("platform", self.platform),
            ("nats", self.nats),
            ("database", self.database),
            ("plugins", self.plugins),
            ("shell", self.shell),
            ("logging", self.logging),
        ];
        for (name, section) in sections {
            if !section.is_empty() {
                out.insert(name.into(), Value::Object(section));
            }
        }
        out.extend(self.verbatim);
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        let v1 = json!({"domain": "https://cytu.be", "channel": "x"});
        let v2 = json!({"version": "2.0", "platforms": []});
        let ours = json!({"version": "2.0", "platform": {"type": "console"}});
        let by_url = json!({"nats": {"url": "nats://x:4222"}});
        let by_bool = json!({"plugins": {"enabled": true}});
        let detect_of = |v: &Value| detect(v.as_object().unwrap());
        assert_eq!(detect_of(&v1), SourceFormat::OriginalV1);
        assert_eq!(detect_of(&v2), SourceFormat::OriginalV2);
        assert_eq!(detect_of(&by_url), SourceFormat::OriginalV2);
        assert_eq!(detect_of(&by_bool), SourceFormat::OriginalV2);
        assert_eq!(detect_of(&ours), SourceFormat::Current);
        assert_eq!(detect_of(&json!({})), SourceFormat::Current);
    }

    #[test]
    fn current_format_is_returned_untouched() {
        let ours = json!({"platform": {"type": "console"}, "plugins": {"enabled": ["quotes"]}});
        let m = migrate(&ours).unwrap();
        assert_eq!(m.source, SourceFormat::Current);
        assert_eq!(m.output, ours);
        assert!(m.warnings.is_empty());
    }

    #[test]
    fn v1_null_shell_disables_it_instead_of_crashing() {
        let m =
            migrate(&json!({"domain": "https://cytu.be", "channel": "c", "shell": null})).unwrap();
        assert_eq!(m.output["shell"], json!({"enabled": false}));
    }

    #[test]
    fn v1_pairs_split_into_name_and_password() {
        let m = migrate(&json!({
            "domain": "https://cytu.be",
            "channel": ["room", "chanpw"],
            "user": ["bot", "userpw"]
        }))
        .unwrap();
        assert_eq!(m.output["platform"]["channel"], "room");
        assert_eq!(m.output["platform"]["channel_password"], "chanpw");
        assert_eq!(
            m.output["platform"]["credentials"],
            json!({"username": "bot", "password": "userpw"})
        );
    }

    #[test]
    fn unknown_keys_are_reported_not_silently_dropped() {
        let m = migrate(&json!({"domain": "https://x", "mystery": 1})).unwrap();
        assert!(
            m.warnings.iter().any(|w| w.starts_with("mystery:")),
            "{:?}",
            m.warnings
        );
        assert!(m.output.get("mystery").is_none());
    }

    #[test]
    fn llm_block_carries_over_whole_with_a_word_on_plain_keys() {
        let llm = json!({"enabled": true, "provider": "openai",
                         "openai": {"api_key": "sk-1", "model": "m", "base_url": "http://x"},
                         "triggers": {"commands": ["!ai"]}});
        let m = migrate(&json!({"domain": "https://x", "llm": llm})).unwrap();
        assert_eq!(m.output["llm"], llm);
        assert!(
            m.warnings
                .iter()
                .any(|w| w.starts_with("llm.openai.api_key:") && !w.contains("sk-1")),
            "{:?}",
            m.warnings
        );
    }

    #[test]
    fn not_an_object_is_an_error() {
        assert_eq!(migrate(&json!([1])), Err(MigrateError::NotAnObject));
    }

    #[test]
    fn every_enabled_platform_becomes_a_channel() {
        let m = migrate(&json!({
            "version": "2.0",
            "platforms": [
                {"name": "a", "type": "cytube", "domain": "https://cytu.be",
                 "channel": ["first", "pw1"], "user": ["bot", "secret"], "enabled": true},
                {"name": "b", "type": "cytube", "domain": "https://cytu.be",
                 "channel": "second", "user": ["bot", "secret"], "enabled": false},
                {"name": "c", "type": "cytube", "domain": "https://other.example",
                 "channel": "third", "user": ["other", "pw"]},
            ],
        }))
        .unwrap();
        let platform = &m.output["platform"];
        assert_eq!(platform["domain"], "https://cytu.be");
        assert_eq!(platform["credentials"]["username"], "bot");
        assert!(platform.get("channel").is_none(), "{platform}");
        assert_eq!(
            platform["channels"],
            json!([
                {"name": "first", "channel_password": "pw1"},
                {"name": "third", "domain": "https://other.example",
                 "credentials": {"username": "other", "password": "pw"}},
            ])
        );
        assert!(
            m.warnings
                .iter()
                .any(|w| w.contains("platforms[1].enabled")),
            "{:?}",
            m.warnings
        );
        // The output is a configuration Rosey loads, serving both channels.
        let config: rosey_config::Config = serde_json::from_value(m.output.clone()).unwrap();
        assert_eq!(config.platform.channel_names(), ["first", "third"]);
    }

    #[test]
    fn one_enabled_platform_stays_a_single_channel() {
        let m = migrate(&json!({
            "platforms": [{"type": "cytube", "domain": "https://cytu.be", "channel": "only"}],
        }))
        .unwrap();
        assert_eq!(m.output["platform"]["channel"], "only");
        assert!(m.output["platform"].get("channels").is_none());
    }
}
