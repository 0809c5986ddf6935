//! `logging.llm_log_file`: one line per chat (when, who, which model, the prompt, the answer or
//! the error), as the original's `llm` logger wrote.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rosey_plugin_api::llm::{ChatMessage, Role};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// The open log file; lines are written whole, one writer at a time.
pub struct LlmLog {
    path: PathBuf,
    file: Mutex<tokio::fs::File>,
}

impl LlmLog {
    /// Opens (creating it and its folder if need be) the file for appending.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        Ok(LlmLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Records an answered chat.
    pub async fn answered(
        &self,
        source: &str,
        model: &str,
        messages: &[ChatMessage],
        answer: &str,
    ) {
        self.write(
            source,
            model,
            messages,
            &format!("answer={}", one_line(answer)),
        )
        .await;
    }

    /// Records a failed chat.
    pub async fn failed(&self, source: &str, model: &str, messages: &[ChatMessage], error: &str) {
        self.write(
            source,
            model,
            messages,
            &format!("error={}", one_line(error)),
        )
        .await;
    }

    async fn write(&self, source: &str, model: &str, messages: &[ChatMessage], outcome: &str) {
        // The prompt is the last user line; the system prompt and history are the plugin's.
        let prompt = messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| one_line(&m.content))
            .unwrap_or_default();
        let line = format!(
            "{} source={source} model={model} prompt={prompt} {outcome}\n",
            humantime::format_rfc3339_seconds(SystemTime::now()),
        );
        let mut file = self.file.lock().await;
        if let Err(e) = file.write_all(line.as_bytes()).await {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the LLM log");
        }
    }
}

/// Text on one line, so each chat is one line of the file.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
