//! The optional chat and media log files (`logging.chat_log_file`, `logging.media_log_file`).
//!
//! Timestamps are Unix seconds and are formatted as such (the original divided seconds by 1000
//! a second time and logged dates in 1970).

use rosey_plugin_api::Timestamp;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix timestamp: the original's log format.
pub fn format_utc(ts: Timestamp) -> String {
    let rfc3339 = ts.rfc3339();
    // `2026-12-06T07:06:25Z`: ASCII, the date and the time at fixed places.
    format!("{} {}", &rfc3339[..10], &rfc3339[11..19])
}

/// The open log files; a write failure is logged, never fatal.
#[derive(Default)]
pub struct LogFiles {
    chat: Option<Mutex<File>>,
    media: Option<Mutex<File>>,
}

fn open(path: Option<&Path>) -> Option<Mutex<File>> {
    let path = path?;
    match OpenOptions::new().create(true).append(true).open(path) {
        Ok(f) => Some(Mutex::new(f)),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open log file; not logging to it");
            None
        }
    }
}

fn append(file: &Option<Mutex<File>>, line: &str) {
    if let Some(file) = file {
        let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writeln!(f, "{line}") {
            tracing::warn!(error = %e, "cannot write to log file");
        }
    }
}

impl LogFiles {
    /// Opens the configured files for appending.
    pub fn open(chat: Option<&Path>, media: Option<&Path>) -> Self {
        LogFiles {
            chat: open(chat),
            media: open(media),
        }
    }

    /// Logs a chat line.
    pub fn chat(&self, ts: Timestamp, user: &str, text: &str) {
        append(&self.chat, &format!("[{}] <{user}> {text}", format_utc(ts)));
    }

    /// Logs a private message.
    pub fn pm(&self, ts: Timestamp, from: &str, to: &str, text: &str) {
        append(
            &self.chat,
            &format!("[{}] [pm] {from} -> {to}: {text}", format_utc(ts)),
        );
    }

    /// Logs a media change.
    pub fn media(&self, ts: Timestamp, kind: &str, id: &str, title: &str) {
        append(
            &self.media,
            &format!("[{}] {kind}:{id} {title}", format_utc(ts)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_real_dates() {
        let t = |s| format_utc(Timestamp::from_secs(s).unwrap());
        assert_eq!(t(1), "1970-01-01 00:00:01");
        assert_eq!(t(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(t(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(t(1_795_727_587), "2026-11-26 21:13:07");
    }

    #[test]
    fn writes_lines_to_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let chat = dir.path().join("chat.log");
        let media = dir.path().join("media.log");
        let logs = LogFiles::open(Some(&chat), Some(&media));
        let ts = Timestamp::from_secs(1_700_000_000).unwrap();
        logs.chat(ts, "alice", "hi");
        logs.pm(ts, "bob", "rosey", "help");
        logs.media(ts, "yt", "abc", "Song");
        let text = std::fs::read_to_string(&chat).unwrap();
        assert_eq!(
            text,
            "[2023-11-14 22:13:20] <alice> hi\n[2023-11-14 22:13:20] [pm] bob -> rosey: help\n"
        );
        assert_eq!(
            std::fs::read_to_string(&media).unwrap(),
            "[2023-11-14 22:13:20] yt:abc Song\n"
        );
    }
}
