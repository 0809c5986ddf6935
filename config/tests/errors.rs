//! Every kind of mistake is rejected with the file and the key path in the message.

mod common;

use rosey_config::{Config, ConfigError};

use common::{assert_rejects, fixture, load_err, ORIGIN};

#[test]
fn unknown_key_at_top_level() {
    assert_rejects(r#"{"plaform": {}}"#, "plaform", "unknown field `plaform`");
}

#[test]
fn unknown_key_nested() {
    let err = assert_rejects(
        r#"{"platform": {"chat_rate": {"brust": 4}}}"#,
        "platform.chat_rate.brust",
        "unknown field `brust`, expected `burst` or `per_second`",
    );
    assert!(matches!(err, ConfigError::Invalid { .. }));
    assert_rejects(
        r#"{"nats": {"tls": {"ca": "x"}}}"#,
        "nats.tls.ca",
        "unknown field",
    );
    assert_rejects(
        r#"{"plugins": {"config": {"m": {"permissions": {"publsh": []}}}}}"#,
        "plugins.config.m.permissions.publsh",
        "unknown field `publsh`",
    );
    // `_comment` is only ignored at the top level.
    assert_rejects(
        r#"{"shell": {"_comment": "x"}}"#,
        "shell._comment",
        "unknown field",
    );
}

#[test]
fn wrong_type() {
    let err = load_err(r#"{"platform": {"chat_rate": {"burst": "x"}}}"#);
    assert_eq!(
        err.to_string(),
        r#"config.json: platform.chat_rate.burst: invalid type: string "x", expected u32"#
    );
    assert_rejects(
        r#"{"plugins": {"enabled": ["a", 3]}}"#,
        "plugins.enabled[1]",
        "invalid type: integer `3`",
    );
    assert_rejects(
        r#"{"shell": {"enabled": "yes"}}"#,
        "shell.enabled",
        "expected a boolean",
    );
    assert_rejects(
        r#"{"platform": {"chat_rate": {"burst": -1}}}"#,
        "platform.chat_rate.burst",
        "expected u32",
    );
    assert_rejects(r#"{"nats": []}"#, "nats", "invalid type: sequence");
    assert_rejects(
        r#"{"plugins": {"config": {"m": 5}}}"#,
        "plugins.config.m",
        "invalid type: integer `5`",
    );
    assert_rejects(
        r#"{"plugins": {"config": {"m": {"channels": "lobby"}}}}"#,
        "plugins.config.m.channels",
        "invalid type: string",
    );
    assert_rejects(
        r#"{"logging": {"format": "xml"}}"#,
        "logging.format",
        "unknown variant `xml`",
    );
}

#[test]
fn not_an_object() {
    assert_rejects("[1]", "(top level)", "expected a JSON object");
}

#[test]
fn negative_or_bad_durations() {
    assert_rejects(
        r#"{"nats": {"reconnect_delay": -2}}"#,
        "nats.reconnect_delay",
        "invalid value: integer `-2`, expected a non-negative number of seconds",
    );
    assert_rejects(
        r#"{"platform": {"response_timeout": -0.5}}"#,
        "platform.response_timeout",
        "expected a non-negative number of seconds",
    );
    assert_rejects(
        r#"{"database": {"stream": {"duplicate_window": "2m"}}}"#,
        "database.stream.duplicate_window",
        "invalid type: string \"2m\"",
    );
    assert_rejects(
        r#"{"platform": {"status_interval": 0}}"#,
        "platform.status_interval",
        "greater than 0",
    );
}

#[test]
fn bad_platform_type() {
    assert_rejects(
        r#"{"platform": {"type": "irc"}}"#,
        "platform.type",
        "unknown variant `irc`, expected `cytube` or `console`",
    );
}

#[test]
fn cytube_needs_domain_and_channel() {
    assert_rejects(
        r#"{"platform": {"type": "cytube", "channel": "c"}}"#,
        "platform.domain",
        "required when platform.type is \"cytube\"",
    );
    assert_rejects(
        r#"{"platform": {"type": "cytube", "domain": "https://cytu.be"}}"#,
        "platform.channel",
        "required",
    );
    assert_rejects(
        r#"{"platform": {"type": "cytube", "domain": "https://cytu.be", "channel": ""}}"#,
        "platform.channel",
        "must not be empty",
    );
}

#[test]
fn domain_needs_a_scheme() {
    assert_rejects(
        r#"{"platform": {"type": "cytube", "domain": "cytu.be", "channel": "c"}}"#,
        "platform.domain",
        "expected a URL starting with http:// or https://",
    );
}

#[test]
fn other_rules() {
    assert_rejects(
        r#"{"platform": {"command_prefix": ""}}"#,
        "platform.command_prefix",
        "must not be empty",
    );
    assert_rejects(
        r#"{"platform": {"reconnect_min_delay": 10, "reconnect_max_delay": 5}}"#,
        "platform.reconnect_min_delay",
        "must not exceed",
    );
    assert_rejects(
        r#"{"nats": {"max_reconnects": 0}}"#,
        "nats.max_reconnects",
        "-1",
    );
    assert_rejects(
        r#"{"nats": {"user": "u"}}"#,
        "nats.password",
        "required when nats.user is set",
    );
    assert_rejects(
        r#"{"nats": {"tls": {"cert_file": "c.pem"}}}"#,
        "nats.tls.key_file",
        "required",
    );
    assert_rejects(
        r#"{"plugins": {"enabled": ["a", "a"]}}"#,
        "plugins.enabled[1]",
        "listed twice",
    );
    assert_rejects(
        r#"{"plugins": {"config": {"m": {"permissions": {"publish": ["a b"]}}}}}"#,
        "plugins.config.m.permissions.publish[0]",
        "not a NATS subject",
    );
}

#[test]
fn bad_version() {
    let err = assert_rejects(
        r#"{"version": "3.0"}"#,
        "version",
        "unsupported configuration version \"3.0\"",
    );
    assert!(
        err.to_string().contains("rosey migrate-config config.json"),
        "{err}"
    );
    assert_rejects(r#"{"version": 2}"#, "version", "rosey migrate-config");
}

#[test]
fn old_v1_format() {
    let path = fixture("original-v1.json");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::OldFormat { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("this looks like the original Rosey's format"),
        "{text}"
    );
    assert!(
        text.contains(&format!("rosey migrate-config {}", path.display())),
        "{text}"
    );
    assert_eq!(err.key_path(), Some("domain"));
    assert_rejects(r#"{"user": null}"#, "user", "original Rosey's format");
}

#[test]
fn old_v2_format() {
    let err = Config::load(&fixture("original-v2.json")).unwrap_err();
    assert!(matches!(err, ConfigError::OldFormat { .. }), "{err:?}");
    assert_eq!(err.key_path(), Some("platforms"));
    assert_rejects(
        r#"{"nats": {"url": "nats://x:4222"}}"#,
        "nats.url",
        "rosey migrate-config config.json",
    );
}

#[test]
fn plugins_enabled_must_be_a_list() {
    let err = assert_rejects(
        r#"{"plugins": {"enabled": true}}"#,
        "plugins.enabled",
        "rosey migrate-config",
    );
    assert!(matches!(err, ConfigError::OldFormat { .. }));
    assert_rejects(
        r#"{"plugins": {"enabled": "markov"}}"#,
        "plugins.enabled",
        "invalid type: string",
    );
}

#[test]
fn nats_subjects_must_match_the_contract() {
    assert_rejects(
        r#"{"database": {"nats_subjects": {"user_joined": "rosey.db.user.join"}}}"#,
        "database.nats_subjects.user_joined",
        "expected \"rosey.db.user.joined\", found \"rosey.db.user.join\"",
    );
    assert_rejects(
        r#"{"database": {"nats_subjects": {"user_parted": "rosey.db.user.left"}}}"#,
        "database.nats_subjects.user_parted",
        "unknown subject name",
    );
    assert_rejects(
        r#"{"database": {"nats_subjects": {"user_left": 1}}}"#,
        "database.nats_subjects.user_left",
        "invalid type: integer",
    );
    let all: serde_json::Map<String, serde_json::Value> = rosey_config::DB_SUBJECTS
        .iter()
        .map(|(name, subject)| ((*name).to_owned(), (*subject).into()))
        .collect();
    let json = serde_json::json!({"database": {"nats_subjects": all}});
    assert!(common::load(&json.to_string()).is_ok());
}

#[test]
fn malformed_json_reports_line_and_column() {
    let err = load_err("{\n  \"nats\": {\n    \"server\": \"x\",\n  }\n}");
    match &err {
        ConfigError::Parse {
            file, line, column, ..
        } => {
            assert_eq!(file, ORIGIN);
            assert_eq!((*line, *column), (4, 3));
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("config.json:4:3: not valid JSON: trailing comma"),
        "{text}"
    );
    assert!(!text.contains("at line"), "{text}");
}

#[test]
fn missing_file() {
    let path = fixture("does-not-exist.json");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with(&path.display().to_string()), "{text}");
    assert!(
        text.contains("cannot read the configuration file"),
        "{text}"
    );
}

#[test]
fn plugins_checkpoint_interval_is_positive_seconds() {
    assert_rejects(
        r#"{"plugins": {"checkpoint_interval": 0}}"#,
        "plugins.checkpoint_interval",
        "",
    );
    let config = common::load(r#"{"plugins": {"checkpoint_interval": 30}}"#)
        .expect("30 seconds is a checkpoint interval");
    assert_eq!(
        config.plugins.checkpoint_interval.as_duration(),
        std::time::Duration::from_secs(30)
    );
}
