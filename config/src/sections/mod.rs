//! The typed sections of the file, one module each, and the small checks they share.

pub mod database;
pub mod llm;
pub mod logging;
pub mod nats;
pub mod platform;
pub mod plugins;
pub mod proxy;
pub mod shell;

use std::path::{Component, Path, PathBuf};

use crate::error::Problem;
use crate::seconds::Seconds;
use crate::secret::Secret;

/// Rejects an empty (or blank) string.
pub(crate) fn require_non_empty(key_path: &str, value: &str) -> Result<(), Problem> {
    if value.trim().is_empty() {
        return Err(Problem::new(key_path, "must not be empty"));
    }
    Ok(())
}

/// Rejects an empty secret, which is always a mistake (leave the key out instead).
pub(crate) fn secret_non_empty(key_path: &str, secret: Option<&Secret>) -> Result<(), Problem> {
    match secret {
        Some(secret) if secret.is_resolved() && secret.expose().is_empty() => Err(Problem::new(
            key_path,
            "must not be empty (leave the key out instead)",
        )),
        _ => Ok(()),
    }
}

/// Rejects a zero duration where zero would make a timer spin or panic.
pub(crate) fn positive(key_path: &str, value: Seconds) -> Result<(), Problem> {
    if value.as_duration().is_zero() {
        return Err(Problem::new(key_path, "must be greater than 0"));
    }
    Ok(())
}

/// Resolves a path from the file against `base_dir`, dropping `.` parts (`./plugins`).
pub(crate) fn resolve_path(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let relative: PathBuf = path
        .components()
        .filter(|part| !matches!(part, Component::CurDir))
        .collect();
    match (
        relative.as_os_str().is_empty(),
        base_dir.as_os_str().is_empty(),
    ) {
        (true, true) => PathBuf::from("."),
        (true, false) => base_dir.to_path_buf(),
        _ => base_dir.join(relative),
    }
}

/// [`resolve_path`] in place.
pub(crate) fn resolve_in_place(base_dir: &Path, path: &mut PathBuf) {
    *path = resolve_path(base_dir, path);
}

/// [`resolve_path`] in place, for optional paths.
pub(crate) fn resolve_opt(base_dir: &Path, path: &mut Option<PathBuf>) {
    if let Some(p) = path {
        resolve_in_place(base_dir, p);
    }
}

/// Serializes a path lossily, so a non-UTF-8 path cannot make printing the config fail.
pub(crate) fn ser_path<S: serde::Serializer>(
    path: &Path,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// [`ser_path`] for optional paths.
pub(crate) fn ser_opt_path<S: serde::Serializer>(
    path: &Option<PathBuf>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => ser_path(path, serializer),
        None => serializer.serialize_none(),
    }
}
