//! Reading a file into a [`Config`]: parse, spot old formats, resolve the secrets the process
//! reads, deserialize
//! with key paths, check rules, resolve relative paths.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::{Config, CURRENT_VERSION};
use crate::error::{join_key, ConfigError};
use crate::role::SecretScope;
use crate::secret::resolve_secret_refs;

/// Top-level keys that are accepted and dropped, as the original did.
const COMMENT_KEYS: [&str; 2] = ["_comment", "_note"];

/// Top-level keys of the original Rosey's flat v1 format.
const V1_KEYS: [&str; 13] = [
    "domain",
    "channel",
    "user",
    "db",
    "log_level",
    "response_timeout",
    "restart_delay",
    "retry",
    "retry_delay",
    "proxy",
    "chat_log_file",
    "media_log_file",
    "llm_log_file",
];

/// Sections held in Rust structs; serde would also read them from arrays, positionally.
const OBJECT_PATHS: [&str; 25] = [
    "platform",
    "platform.credentials",
    "platform.chat_rate",
    "platform.flood",
    "nats",
    "nats.tls",
    "database",
    "database.stream",
    "plugins",
    "plugins.config.*",
    "plugins.config.*.permissions",
    "shell",
    "logging",
    "database.nats_subjects",
    "llm",
    "llm.openai",
    "llm.ollama",
    "llm.openrouter",
    "llm.gateway",
    "llm.triggers",
    "llm.triggers.ambient_chat",
    "llm.triggers.greetings",
    "llm.triggers.greetings.on_join",
    "llm.triggers.greetings.on_join.specific_users",
    "llm.triggers.greetings.on_status_change",
];

/// How the key path of an error about the whole document is shown.
const TOP_LEVEL: &str = "(top level)";

impl Config {
    /// Loads the configuration file at `path` resolving every secret, for tools that check the
    /// whole file; a service loads with [`Config::load_for`]. Relative paths in it resolve
    /// against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_for(path, SecretScope::All)
    }

    /// Loads the configuration file at `path`, resolving only the secrets `scope` reads (see
    /// [`crate::Role`]); the others are held unresolved.
    pub fn load_for(path: &Path, scope: impl Into<SecretScope>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // Absolute, so paths stay right if the process changes directory later.
        let base_dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
            }
            _ => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        };
        Self::from_json_str_for(&text, &path.display().to_string(), &base_dir, scope.into())
    }

    /// Loads a configuration from JSON text resolving every secret; `origin_name` names it in
    /// errors and `base_dir` is where relative paths resolve.
    pub fn from_json_str(
        text: &str,
        origin_name: &str,
        base_dir: &Path,
    ) -> Result<Config, ConfigError> {
        Self::from_json_str_for(text, origin_name, base_dir, SecretScope::All)
    }

    /// [`Config::from_json_str`], resolving only the secrets `scope` reads.
    pub fn from_json_str_for(
        text: &str,
        origin_name: &str,
        base_dir: &Path,
        scope: SecretScope,
    ) -> Result<Config, ConfigError> {
        let file = origin_name;
        let mut value: Value = serde_json::from_str(text).map_err(|e| parse_error(file, &e))?;
        let Value::Object(root) = &mut value else {
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                key_path: TOP_LEVEL.to_owned(),
                message: "expected a JSON object".to_owned(),
            });
        };
        for key in COMMENT_KEYS {
            root.remove(key);
        }
        if let Some(key_path) = old_format_marker(root) {
            return Err(ConfigError::OldFormat {
                file: file.to_owned(),
                key_path,
            });
        }
        check_version(root, file)?;
        for pattern in OBJECT_PATHS {
            reject_arrays(&value, pattern, "").map_err(|key_path| ConfigError::Invalid {
                file: file.to_owned(),
                key_path,
                message: "invalid type: sequence, expected an object".to_owned(),
            })?;
        }
        resolve_secret_refs(&mut value, base_dir, scope).map_err(|p| p.secret(file))?;

        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let key_path = e.path().to_string();
            ConfigError::Invalid {
                file: file.to_owned(),
                key_path: if key_path == "." {
                    TOP_LEVEL.to_owned()
                } else {
                    key_path
                },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate().map_err(|p| p.invalid(file))?;
        config.resolve_paths(base_dir);
        config
            .llm
            .read_system_prompt()
            .map_err(|p| p.invalid(file))?;
        config.collect_warnings();
        Ok(config)
    }
}

/// Finds an array at a dotted `pattern` (`*` matches every key) and returns its key path.
fn reject_arrays(value: &Value, pattern: &str, path: &str) -> Result<(), String> {
    let (head, rest) = match pattern.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (pattern, None),
    };
    let Value::Object(map) = value else {
        return Ok(());
    };
    for (key, child) in map.iter().filter(|(key, _)| head == "*" || *key == head) {
        let child_path = join_key(path, key);
        match rest {
            Some(rest) => reject_arrays(child, rest, &child_path)?,
            None if child.is_array() => return Err(child_path),
            None => {}
        }
    }
    Ok(())
}

/// Turns a JSON syntax error into [`ConfigError::Parse`] without repeating the position.
fn parse_error(file: &str, error: &serde_json::Error) -> ConfigError {
    let (line, column) = (error.line(), error.column());
    let full = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    ConfigError::Parse {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}

/// The key that shows a document is in the original Rosey's v1 or v2 format, if any.
fn old_format_marker(root: &Map<String, Value>) -> Option<String> {
    let section = |name: &str| root.get(name).and_then(Value::as_object);
    if root.contains_key("platforms") {
        return Some("platforms".to_owned());
    }
    if section("nats").is_some_and(|nats| nats.contains_key("url")) {
        return Some("nats.url".to_owned());
    }
    if section("plugins")
        .and_then(|plugins| plugins.get("enabled"))
        .is_some_and(Value::is_boolean)
    {
        return Some("plugins.enabled".to_owned());
    }
    if let Some(key) = V1_KEYS.iter().find(|key| root.contains_key(**key)) {
        return Some((*key).to_owned());
    }
    if root.get("shell").is_some_and(Value::is_string) {
        return Some("shell".to_owned());
    }
    None
}

/// Accepts only `"version": "2.0"` (or no version at all).
fn check_version(root: &Map<String, Value>, file: &str) -> Result<(), ConfigError> {
    let message = match root.get("version") {
        None => return Ok(()),
        Some(Value::String(version)) if version == CURRENT_VERSION => return Ok(()),
        Some(Value::String(version)) => format!(
            "unsupported configuration version {version:?}: this Rosey reads version \
             {CURRENT_VERSION:?}; convert the file with `rosey migrate-config {file}`"
        ),
        Some(other) => format!(
            "expected the string {CURRENT_VERSION:?}, found {other}; \
             convert the file with `rosey migrate-config {file}`"
        ),
    };
    Err(ConfigError::Invalid {
        file: file.to_owned(),
        key_path: "version".to_owned(),
        message,
    })
}
