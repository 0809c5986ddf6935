//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rosey_config::{Config, ConfigError};

/// The origin name the tests load text under.
pub const ORIGIN: &str = "config.json";

/// Loads JSON text as if it were `/etc/rosey/config.json`.
pub fn load(json: &str) -> Result<Config, ConfigError> {
    Config::from_json_str(json, ORIGIN, Path::new("/etc/rosey"))
}

/// Loads JSON text that must fail and returns the error.
pub fn load_err(json: &str) -> ConfigError {
    match load(json) {
        Ok(config) => panic!("expected an error, loaded {config:?}"),
        Err(e) => e,
    }
}

/// Asserts that loading fails with `key_path` and a message containing `needle`.
pub fn assert_rejects(json: &str, key_path: &str, needle: &str) -> ConfigError {
    let err = load_err(json);
    let text = err.to_string();
    assert_eq!(err.key_path(), Some(key_path), "wrong key path in: {text}");
    assert!(
        text.starts_with(&format!("{ORIGIN}: {key_path}: ")),
        "message does not name file and key: {text}"
    );
    assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    err
}

/// Path of a file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
