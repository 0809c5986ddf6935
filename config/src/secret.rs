//! Passwords and tokens: a type that never prints its content, and the `<key>_env` /
//! `<key>_file` indirections that keep them out of the configuration file.

use std::fmt;
use std::path::Path;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{join_key, Problem};
use crate::role::SecretScope;

/// What a secret prints as, everywhere except [`Secret::expose`].
pub const REDACTED: &str = "***";

/// Key names that may be given as `<key>_env` or `<key>_file` anywhere in the file.
pub const SECRET_KEYS: [&str; 5] = [
    "password",
    "channel_password",
    "proxy_password",
    "token",
    "api_key",
];

/// A password or token; `Debug`, `Display` and `Serialize` all print `***` so logs stay clean.
///
/// A secret whose `_env` / `_file` belongs to a part of the file the process's role does not read
/// ([`crate::SecretScope`]) is held unresolved: only where it comes from, never its text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(SecretValue);

/// A secret's text, or where it would come from when this process does not read it.
#[derive(Clone, PartialEq, Eq)]
enum SecretValue {
    Resolved(String),
    Unresolved(String),
}

/// The object key the loader marks an unresolved secret with before typed deserialization.
pub(crate) const UNRESOLVED_MARKER: &str = "$rosey_unresolved_secret";

impl Secret {
    /// Wraps a secret value, e.g. one given on the command line.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretValue::Resolved(value.into()))
    }

    /// The secret text itself; call it only where the secret is sent to its consumer.
    ///
    /// An unresolved secret (one this process's role does not read) exposes as the empty
    /// string, which no server accepts as a password or key.
    pub fn expose(&self) -> &str {
        match &self.0 {
            SecretValue::Resolved(text) => text,
            SecretValue::Unresolved(_) => "",
        }
    }

    /// Whether this process holds the secret's text (false when its role does not read it).
    pub fn is_resolved(&self) -> bool {
        matches!(self.0, SecretValue::Resolved(_))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SecretValue::Resolved(_) => f.write_str(REDACTED),
            SecretValue::Unresolved(origin) => write!(f, "<unresolved: {origin}>"),
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Reads a secret's text, or the marker [`mark_unresolved`] leaves for an unresolved one.
struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let marked = map.next_entry::<String, String>()?;
        match (marked, map.next_key::<de::IgnoredAny>()?) {
            (Some((key, origin)), None) if key == UNRESOLVED_MARKER => {
                Ok(Secret(SecretValue::Unresolved(origin)))
            }
            _ => Err(de::Error::invalid_type(de::Unexpected::Map, &self)),
        }
    }
}

/// Whether a key of free-form JSON (`llm`, plugin settings, ...) holds a secret to redact.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "token", "secret", "api_key", "apikey"]
        .iter()
        .any(|suffix| key.ends_with(suffix))
}

/// A copy of free-form JSON with every secret-looking value replaced by `***`.
pub(crate) fn redact_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = if is_secret_key(key) && !value.is_null() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact_value(value)
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_value).collect()),
        other => other.clone(),
    }
}

/// Rewrites every `<key>_env` / `<key>_file` (for the [`SECRET_KEYS`]) into `<key>`, so typed
/// deserialization only ever sees the plain key: holding the secret text where `scope` resolves
/// that key path, an unresolved marker elsewhere (the variable or file is then never read).
///
/// Relative `_file` paths resolve against `base_dir`, the configuration file's folder.
pub(crate) fn resolve_secret_refs(
    value: &mut Value,
    base_dir: &Path,
    scope: SecretScope,
) -> Result<(), Problem> {
    walk(value, "", base_dir, scope)
}

/// Resolves one level and recurses into children, tracking the key path for messages.
fn walk(value: &mut Value, path: &str, base_dir: &Path, scope: SecretScope) -> Result<(), Problem> {
    match value {
        Value::Object(map) => {
            for key in SECRET_KEYS {
                resolve_in_object(map, path, key, base_dir, scope)?;
            }
            for (key, child) in map.iter_mut() {
                walk(child, &join_key(path, key), base_dir, scope)?;
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter_mut().enumerate() {
                walk(child, &format!("{path}[{index}]"), base_dir, scope)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Handles `key`, `key_env` and `key_file` in one object: at most one may be present.
fn resolve_in_object(
    map: &mut Map<String, Value>,
    path: &str,
    key: &str,
    base_dir: &Path,
    scope: SecretScope,
) -> Result<(), Problem> {
    let env_key = format!("{key}_env");
    let file_key = format!("{key}_file");
    let forms: Vec<&String> = [key.to_owned(), env_key.clone(), file_key.clone()]
        .iter()
        .filter_map(|k| map.get_key_value(k.as_str()).map(|(k, _)| k))
        .collect();
    if forms.len() > 1 {
        return Err(Problem::new(
            join_key(path, key),
            format!("give only one of `{key}`, `{env_key}` and `{file_key}`"),
        ));
    }
    if map
        .get(key)
        .and_then(Value::as_object)
        .is_some_and(|object| object.contains_key(UNRESOLVED_MARKER))
    {
        return Err(Problem::new(
            join_key(path, key),
            "expected a string (or give the secret with `_env` or `_file`)",
        ));
    }
    let resolve = scope.resolves(&join_key(path, key));
    if let Some(name) = map.remove(&env_key) {
        let key_path = join_key(path, &env_key);
        let name = env_name(&name).map_err(|message| Problem::new(&key_path, message))?;
        let secret = if resolve {
            Value::String(from_env(name).map_err(|message| Problem::new(&key_path, message))?)
        } else {
            mark_unresolved(format!("environment variable `{name}`"))
        };
        map.insert(key.to_owned(), secret);
    } else if let Some(file) = map.remove(&file_key) {
        let key_path = join_key(path, &file_key);
        let file =
            file_path(&file, base_dir).map_err(|message| Problem::new(&key_path, message))?;
        let secret = if resolve {
            Value::String(from_file(&file).map_err(|message| Problem::new(&key_path, message))?)
        } else {
            mark_unresolved(format!("file {}", file.display()))
        };
        map.insert(key.to_owned(), secret);
    }
    Ok(())
}

/// The JSON [`Secret`] reads as an unresolved secret coming from `origin`.
fn mark_unresolved(origin: String) -> Value {
    let mut marker = Map::new();
    marker.insert(UNRESOLVED_MARKER.to_owned(), Value::String(origin));
    Value::Object(marker)
}

/// The variable name of a `<key>_env`, which must be a string.
fn env_name(name: &Value) -> Result<&str, String> {
    match name {
        Value::String(name) => Ok(name),
        other => Err(format!(
            "expected the name of an environment variable, found {}",
            describe(other)
        )),
    }
}

/// The path of a `<key>_file`, which must be a string, resolved against `base_dir`.
fn file_path(file: &Value, base_dir: &Path) -> Result<std::path::PathBuf, String> {
    match file {
        Value::String(file) => Ok(crate::sections::resolve_path(base_dir, Path::new(file))),
        other => Err(format!("expected a file path, found {}", describe(other))),
    }
}

/// Reads a secret from the environment variable `name`.
fn from_env(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Err(format!("environment variable `{name}` is empty")),
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => {
            Err(format!("environment variable `{name}` is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("environment variable `{name}` is not valid UTF-8"))
        }
    }
}

/// Reads a secret from a file, trimming the trailing newline editors add.
fn from_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(secret.to_owned())
}

/// Names a JSON value's kind for messages ("a number", "null").
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_never_prints_its_text() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.to_string(), "***");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secret_key_names() {
        for key in [
            "password",
            "token",
            "api_key",
            "channel_password",
            "access_token",
            "client_secret",
            "secret",
            "openai_apikey",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["max_tokens", "username", "model", "tokens", "keywords"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn redacts_nested_free_form_json() {
        let value = json!({"openai": {"api_key": "sk-1", "model": "m"}, "list": [{"token": "t"}]});
        assert_eq!(
            redact_value(&value),
            json!({"openai": {"api_key": "***", "model": "m"}, "list": [{"token": "***"}]})
        );
    }

    #[test]
    fn two_forms_are_rejected_with_the_key_path() {
        let mut value = json!({"nats": {"token": "a", "token_env": "B"}});
        let problem = resolve_secret_refs(&mut value, Path::new(""), SecretScope::All).unwrap_err();
        assert_eq!(problem.key_path, "nats.token");
        assert!(problem.message.contains("only one of"));
    }

    #[test]
    fn non_string_env_name_is_rejected() {
        let mut value = json!({"a": [{"password_env": 3}]});
        let problem = resolve_secret_refs(&mut value, Path::new(""), SecretScope::All).unwrap_err();
        assert_eq!(problem.key_path, "a[0].password_env");
        assert!(problem.message.contains("found a number"));
    }
}
