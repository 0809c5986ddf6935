//! Secrets from the file, the environment and secret files, and that they never print.

mod common;

use std::fs;

use rosey_config::{Config, ConfigError};

use common::{assert_rejects, load};

/// Every secret text used below; none may appear in `Debug` or the redacted JSON.
const SECRETS: [&str; 6] = [
    "pw-from-env-7431",
    "token-from-file-9921",
    "chan-pw-plain-5550",
    "nats-pw-relative-2718",
    "sk-llm-api-key-3141",
    "plugin-token-1618",
];

fn assert_hidden(config: &Config) {
    let debug = format!("{config:?}");
    let pretty = format!("{config:#?}");
    let json = config.to_redacted_json().to_string();
    for secret in SECRETS {
        assert!(!debug.contains(secret), "Debug shows {secret}: {debug}");
        assert!(!pretty.contains(secret), "pretty Debug shows {secret}");
        assert!(
            !json.contains(secret),
            "redacted JSON shows {secret}: {json}"
        );
    }
}

#[test]
fn secrets_from_env_file_and_plain_text_never_print() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("nats.token"), "token-from-file-9921\n").unwrap();
    fs::create_dir(dir.path().join("secrets")).unwrap();
    fs::write(
        dir.path().join("secrets/nats.pw"),
        "nats-pw-relative-2718\r\n",
    )
    .unwrap();
    std::env::set_var("ROSEY_CONFIG_TEST_SECRET_FROM_ENV", "pw-from-env-7431");
    std::env::set_var("ROSEY_CONFIG_TEST_LLM_KEY", "sk-llm-api-key-3141");
    let token_file = dir.path().join("nats.token");
    let json = serde_json::json!({
        "platform": {
            "type": "cytube", "domain": "https://cytu.be", "channel": "c",
            "channel_password": "chan-pw-plain-5550",
            "credentials": {"username": "bot", "password_env": "ROSEY_CONFIG_TEST_SECRET_FROM_ENV"}
        },
        "nats": {
            "user": "rosey",
            "password_file": "secrets/nats.pw",
            "token_file": token_file,
        },
        "llm": {"openai": {"api_key_env": "ROSEY_CONFIG_TEST_LLM_KEY", "model": "gpt"}},
        "plugins": {"config": {"quotes": {"token": "plugin-token-1618", "size": 3}}}
    });
    let path = dir.path().join("config.json");
    fs::write(&path, json.to_string()).unwrap();

    let config = Config::load(&path).unwrap();
    let platform = &config.platform;
    assert_eq!(
        platform.credentials.password.as_ref().unwrap().expose(),
        "pw-from-env-7431"
    );
    assert_eq!(
        platform.channel_password.as_ref().unwrap().expose(),
        "chan-pw-plain-5550"
    );
    assert_eq!(
        config.nats.token.as_ref().unwrap().expose(),
        "token-from-file-9921"
    );
    assert_eq!(
        config.nats.password.as_ref().unwrap().expose(),
        "nats-pw-relative-2718"
    );
    assert_eq!(
        config.llm.openai.api_key.as_ref().unwrap().expose(),
        "sk-llm-api-key-3141"
    );
    let quotes = config.plugins.settings("quotes").unwrap();
    assert_eq!(quotes.plugin_json()["token"], "plugin-token-1618");

    assert_hidden(&config);
    let json = config.to_redacted_json();
    assert_eq!(json["platform"]["credentials"]["password"], "***");
    assert_eq!(json["platform"]["channel_password"], "***");
    assert_eq!(json["nats"]["password"], "***");
    assert_eq!(json["nats"]["token"], "***");
    assert_eq!(json["llm"]["openai"]["api_key"], "***");
    assert_eq!(json["llm"]["openai"]["model"], "gpt");
    assert_eq!(json["plugins"]["config"]["quotes"]["token"], "***");
    assert_eq!(json["plugins"]["config"]["quotes"]["size"], 3);
}

#[test]
fn two_forms_at_once_are_rejected() {
    std::env::set_var("ROSEY_CONFIG_TEST_TWO_FORMS", "x");
    let err = assert_rejects(
        r#"{"nats": {"token": "a", "token_env": "ROSEY_CONFIG_TEST_TWO_FORMS"}}"#,
        "nats.token",
        "give only one of `token`, `token_env` and `token_file`",
    );
    assert!(matches!(err, ConfigError::Secret { .. }));
    assert_rejects(
        r#"{"platform": {"credentials": {"password_env": "A", "password_file": "b"}}}"#,
        "platform.credentials.password",
        "give only one of",
    );
}

#[test]
fn missing_env_var_is_rejected() {
    std::env::remove_var("ROSEY_CONFIG_TEST_SURELY_UNSET_5821");
    let err = assert_rejects(
        r#"{"nats": {"user": "u", "password_env": "ROSEY_CONFIG_TEST_SURELY_UNSET_5821"}}"#,
        "nats.password_env",
        "environment variable `ROSEY_CONFIG_TEST_SURELY_UNSET_5821` is not set",
    );
    assert!(matches!(err, ConfigError::Secret { .. }));
}

#[test]
fn empty_env_var_is_rejected() {
    std::env::set_var("ROSEY_CONFIG_TEST_EMPTY_SECRET", "");
    assert_rejects(
        r#"{"nats": {"token_env": "ROSEY_CONFIG_TEST_EMPTY_SECRET"}}"#,
        "nats.token_env",
        "is empty",
    );
}

#[test]
fn unreadable_secret_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let json = r#"{"platform": {"channel_password_file": "nope.txt"}}"#;
    let err = Config::from_json_str(json, "c.json", dir.path()).unwrap_err();
    assert_eq!(err.key_path(), Some("platform.channel_password_file"));
    let text = err.to_string();
    assert!(
        text.starts_with("c.json: platform.channel_password_file: cannot read secret file"),
        "{text}"
    );
    assert!(
        text.contains(&dir.path().join("nope.txt").display().to_string()),
        "{text}"
    );
}

#[test]
fn empty_plain_secret_is_rejected() {
    assert_rejects(
        r#"{"platform": {"credentials": {"password": ""}}}"#,
        "platform.credentials.password",
        "must not be empty",
    );
}

#[test]
fn secret_of_the_wrong_type_is_rejected() {
    assert_rejects(
        r#"{"nats": {"token": 5}}"#,
        "nats.token",
        "invalid type: integer `5`",
    );
}

#[test]
fn unknown_secret_indirection_is_an_unknown_key() {
    let err = load(r#"{"nats": {"user_env": "X"}}"#).unwrap_err();
    assert_eq!(err.key_path(), Some("nats.user_env"));
}

/// A file where each part's secret comes from its own variable or file, for the role tests.
fn per_role_config(dir: &std::path::Path) -> std::path::PathBuf {
    let json = serde_json::json!({
        "platform": {
            "type": "cytube", "domain": "https://cytu.be", "channel": "c",
            "credentials": {"username": "bot", "password_env": "ROSEY_CONFIG_TEST_ROLE_BOT_PW"}
        },
        "nats": {"user": "rosey", "password_env": "ROSEY_CONFIG_TEST_ROLE_NATS_PW"},
        "llm": {
            "enabled": true,
            "provider": "openai",
            "openai": {"api_key_env": "ROSEY_CONFIG_TEST_ROLE_LLM_KEY", "model": "m"},
            "openrouter": {"api_key_file": "no-such-openrouter.key"}
        },
        "plugins": {"config": {"quotes": {"token_file": "quotes.token"}}}
    });
    std::fs::write(dir.join("quotes.token"), "plugin-token-for-runtime\n").unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[test]
fn each_role_resolves_only_the_secrets_it_reads() {
    use rosey_config::Role;
    let dir = tempfile::tempdir().unwrap();
    let path = per_role_config(dir.path());
    std::env::set_var("ROSEY_CONFIG_TEST_ROLE_BOT_PW", "bot-pw-4242");
    std::env::set_var("ROSEY_CONFIG_TEST_ROLE_NATS_PW", "nats-pw-4343");
    std::env::remove_var("ROSEY_CONFIG_TEST_ROLE_LLM_KEY");

    // The bot and the runtime start without the LLM key's variable (and its missing file).
    let bot = Config::load_for(&path, Role::Bot).expect("the bot loads without the LLM key");
    let bot_password = bot.platform.credentials.password.as_ref().unwrap();
    assert_eq!(bot_password.expose(), "bot-pw-4242");
    assert_eq!(bot.nats.password.as_ref().unwrap().expose(), "nats-pw-4343");
    let key = bot.llm.openai.api_key.as_ref().unwrap();
    assert!(!key.is_resolved());
    assert_eq!(key.expose(), "");
    assert!(!bot.llm.openrouter.api_key.as_ref().unwrap().is_resolved());
    let debug = format!("{bot:?}");
    assert!(
        debug.contains("<unresolved: environment variable `ROSEY_CONFIG_TEST_ROLE_LLM_KEY`>"),
        "{debug}"
    );
    assert_eq!(
        bot.plugins.settings("quotes").unwrap().plugin_json()["token"],
        serde_json::json!({"$rosey_unresolved_secret": format!("file {}", dir.path().join("quotes.token").display())})
    );

    let runtime = Config::load_for(&path, Role::Runtime).expect("the runtime loads");
    assert!(!runtime.llm.openai.api_key.as_ref().unwrap().is_resolved());
    assert!(!runtime
        .platform
        .credentials
        .password
        .as_ref()
        .unwrap()
        .is_resolved());
    assert_eq!(
        runtime.plugins.settings("quotes").unwrap().plugin_json()["token"],
        "plugin-token-for-runtime"
    );
    assert_eq!(
        runtime.nats.password.as_ref().unwrap().expose(),
        "nats-pw-4343"
    );

    // rosey-llm refuses to start without its key, naming the variable.
    let err = Config::load_for(&path, Role::Llm).unwrap_err();
    assert_eq!(err.key_path(), Some("llm.openai.api_key_env"));
    assert!(
        err.to_string()
            .contains("environment variable `ROSEY_CONFIG_TEST_ROLE_LLM_KEY` is not set"),
        "{err}"
    );
    // ... and `rosey config check` (every secret) too.
    assert!(Config::load(&path).is_err());
}

#[test]
fn a_role_never_reads_a_secret_it_does_not_use_even_when_available() {
    use rosey_config::Role;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(dir.path().join("llm.key"), "sk-role-test-9090\n").unwrap();
    let json = serde_json::json!({
        "llm": {"enabled": true, "provider": "openai", "openai": {"api_key_file": "llm.key"}}
    });
    std::fs::write(&path, json.to_string()).unwrap();
    for role in [
        Role::Bot,
        Role::Runtime,
        Role::Db,
        Role::Web,
        Role::Operator,
    ] {
        let config = Config::load_for(&path, role).unwrap();
        let key = config.llm.openai.api_key.as_ref().unwrap();
        assert!(!key.is_resolved(), "{role} resolved the LLM key");
        for text in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(!text.contains("sk-role-test-9090"), "{role}: {text}");
        }
    }
    let llm = Config::load_for(&path, Role::Llm).unwrap();
    assert_eq!(
        llm.llm.openai.api_key.as_ref().unwrap().expose(),
        "sk-role-test-9090"
    );
}

#[test]
fn every_role_checks_the_form_of_secrets_it_does_not_read() {
    use rosey_config::{Role, SecretScope};
    for role in Role::ALL {
        let err = Config::from_json_str_for(
            r#"{"llm": {"openai": {"api_key_env": 7}}}"#,
            "c.json",
            std::path::Path::new(""),
            SecretScope::Role(*role),
        )
        .unwrap_err();
        assert_eq!(err.key_path(), Some("llm.openai.api_key_env"), "{role}");
        let err = Config::from_json_str_for(
            r#"{"llm": {"openai": {"api_key": "a", "api_key_env": "B"}}}"#,
            "c.json",
            std::path::Path::new(""),
            SecretScope::Role(*role),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("give only one of"),
            "{role}: {err}"
        );
    }
}

#[test]
fn the_unresolved_marker_cannot_be_written_in_the_file() {
    assert_rejects(
        r#"{"llm": {"openai": {"api_key": {"$rosey_unresolved_secret": "x"}}}}"#,
        "llm.openai.api_key",
        "expected a string",
    );
}
