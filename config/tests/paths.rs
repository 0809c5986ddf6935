//! Relative paths resolve against the configuration file's folder.

mod common;

use std::fs;
use std::path::Path;

use rosey_config::Config;

#[test]
fn relative_paths_resolve_against_the_file_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("etc");
    fs::create_dir(&sub).unwrap();
    let path = sub.join("rosey.json");
    fs::write(
        &path,
        r#"{
            "database": {"path": "data/bot.db"},
            "plugins": {"directory": "./plugins"},
            "logging": {"chat_log_file": "../logs/chat.log", "media_log_file": "/var/log/media.log",
                        "llm_log_file": "llm.log"},
            "nats": {"creds_file": "rosey.creds",
                     "tls": {"ca_file": "tls/ca.pem", "cert_file": "tls/c.pem", "key_file": "/k.pem"}}
        }"#,
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.database.path, sub.join("data/bot.db"));
    assert_eq!(config.plugins.directory, sub.join("plugins"));
    assert_eq!(
        config.plugins.directory.to_str(),
        sub.join("plugins").to_str()
    );
    assert_eq!(
        config.logging.chat_log_file,
        Some(sub.join("../logs/chat.log"))
    );
    assert_eq!(
        config.logging.media_log_file.as_deref(),
        Some(Path::new("/var/log/media.log"))
    );
    assert_eq!(config.logging.llm_log_file, Some(sub.join("llm.log")));
    assert_eq!(config.nats.creds_file, Some(sub.join("rosey.creds")));
    assert_eq!(config.nats.tls.ca_file, Some(sub.join("tls/ca.pem")));
    assert_eq!(config.nats.tls.cert_file, Some(sub.join("tls/c.pem")));
    assert_eq!(
        config.nats.tls.key_file.as_deref(),
        Some(Path::new("/k.pem"))
    );
}

#[test]
fn a_relative_file_path_gives_absolute_resolved_paths() {
    // `cargo test` runs integration tests in the package folder.
    let relative = Path::new("tests/fixtures/prd-v2-example.json");
    let config = Config::load(relative).unwrap();
    let expected = std::env::current_dir()
        .unwrap()
        .join("tests/fixtures/bot_data.db");
    assert!(config.database.path.is_absolute());
    assert_eq!(config.database.path, expected);
}

#[test]
fn from_json_str_uses_the_given_folder_and_defaults_stay_relative() {
    let config = Config::from_json_str("{}", "inline", Path::new("")).unwrap();
    assert_eq!(config.database.path, Path::new("bot_data.db"));
    assert_eq!(config.plugins.directory.to_str(), Some("plugins"));
    let defaults = Config::default();
    assert_eq!(defaults.database.path, Path::new("bot_data.db"));
}

#[test]
fn overrides_replace_paths_as_given() {
    let mut config = Config::default();
    config.set_database_path("/tmp/other.db");
    config.set_plugins_dir("build/plugins");
    assert_eq!(config.database.path, Path::new("/tmp/other.db"));
    assert_eq!(config.plugins.directory, Path::new("build/plugins"));
}
