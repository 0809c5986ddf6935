//! One HTTP attempt at a provider: building the request for its API (OpenAI-compatible
//! chat completions or Ollama's native chat) and reading its answer. Retries live in
//! [`crate::gateway`].

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use rosey_config::{LlmConfig, LlmProvider, Secret};
use rosey_plugin_api::llm::{ChatMessage, TokenUsage};
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

/// Which wire format the provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST {base}/chat/completions`, `choices[0].message.content`.
    OpenAi,
    /// `POST {base}/api/chat`, `message.content`.
    Ollama,
}

/// Where and how to reach the provider; the key stays in here and `Debug` never shows it.
#[derive(Clone)]
pub struct Provider {
    /// The provider's name in the configuration (`ollama`, `openai`, `openrouter`).
    pub name: LlmProvider,
    api: Api,
    url: String,
    api_key: Option<Secret>,
    /// Extra headers (OpenRouter's site headers).
    extra: Vec<(&'static str, String)>,
    /// The model asked for when a request names none.
    pub default_model: String,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("api", &self.api)
            .field("url", &self.url)
            .field(
                "api_key",
                &self.api_key.as_ref().map(|_| rosey_config::REDACTED),
            )
            .field("default_model", &self.default_model)
            .finish()
    }
}

/// What one request to the provider asks for, defaults applied.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The model.
    pub model: &'a str,
    /// The conversation.
    pub messages: &'a [ChatMessage],
    /// Sampling temperature, if the caller set one.
    pub temperature: Option<f64>,
    /// Token cap, if the caller set one.
    pub max_tokens: Option<u32>,
}

/// The provider's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The text.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// Tokens used.
    pub usage: TokenUsage,
}

/// Why one attempt failed; messages never hold the key (it is only ever in a header).
#[derive(Debug, Error)]
pub enum AttemptError {
    /// No connection, or it broke.
    #[error("cannot reach the provider: {0}")]
    Connect(String),
    /// No complete answer within the timeout.
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    /// Every provider slot stayed busy for a whole timeout.
    #[error("no free slot within {0:?}: {1} chats are already at the provider")]
    Busy(Duration, usize),
    /// HTTP 429; `retry_after` is the provider's `Retry-After`, if it gave one.
    #[error("the provider refused for rate (HTTP 429){}", retry_hint(*.retry_after))]
    RateLimited {
        /// The provider's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Another HTTP error status.
    #[error("the provider answered HTTP {status}: {excerpt}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, for the log.
        excerpt: String,
        /// The provider's `Retry-After`, honoured on 5xx too.
        retry_after: Option<Duration>,
    },
    /// The body was not a chat answer.
    #[error("the provider's answer is not a chat answer: {0}")]
    Malformed(String),
    /// The body was over the cap.
    #[error("the provider's answer is over {0} bytes")]
    TooLarge(usize),
}

fn retry_hint(after: Option<Duration>) -> String {
    after
        .map(|d| format!(", retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

impl AttemptError {
    /// Whether another attempt may succeed: rate refusals, server errors and lost connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Connect(_) | AttemptError::RateLimited { .. } => true,
            AttemptError::Status { status, .. } => *status >= 500,
            AttemptError::Timeout(_)
            | AttemptError::Busy(..)
            | AttemptError::Malformed(_)
            | AttemptError::TooLarge(_) => false,
        }
    }

    /// The provider's own idea of when to retry.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptError::RateLimited { retry_after }
            | AttemptError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An error's text with its causes, without the URL (which reqwest would add and which could
/// hold user information).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The provider's `Retry-After`: a number of seconds, or an HTTP date (the pause until then; a
/// date already past means at once). Anything else is ignored and backoff applies.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn trim_base(url: &str) -> &str {
    url.trim_end_matches('/')
}

impl Provider {
    /// The provider the `llm` section selects.
    pub fn from_config(llm: &LlmConfig) -> Self {
        match llm.provider {
            LlmProvider::Ollama => Provider {
                name: llm.provider,
                api: Api::Ollama,
                url: format!("{}/api/chat", trim_base(&llm.ollama.base_url)),
                api_key: None,
                extra: Vec::new(),
                default_model: llm.ollama.model.clone(),
            },
            LlmProvider::Openai => Provider {
                name: llm.provider,
                api: Api::OpenAi,
                url: format!("{}/chat/completions", trim_base(&llm.openai.base_url)),
                api_key: llm.openai.api_key.clone(),
                extra: Vec::new(),
                default_model: llm.openai.model.clone(),
            },
            LlmProvider::Openrouter => {
                let or = &llm.openrouter;
                let mut extra = Vec::new();
                if let Some(url) = &or.site_url {
                    extra.push(("HTTP-Referer", url.clone()));
                }
                if let Some(name) = &or.site_name {
                    extra.push(("X-Title", name.clone()));
                }
                Provider {
                    name: llm.provider,
                    api: Api::OpenAi,
                    url: format!("{}/chat/completions", trim_base(&or.base_url)),
                    api_key: or.api_key.clone(),
                    extra,
                    default_model: or.model.clone(),
                }
            }
        }
    }

    /// The request body for the provider's API.
    pub fn body(&self, call: &Call<'_>) -> Value {
        let messages: Vec<Value> = call
            .messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        match self.api {
            Api::OpenAi => {
                let mut body = json!({"model": call.model, "messages": messages, "stream": false});
                if let Some(t) = call.temperature {
                    body["temperature"] = json!(t);
                }
                if let Some(n) = call.max_tokens {
                    body["max_tokens"] = json!(n);
                }
                body
            }
            Api::Ollama => {
                let mut options = serde_json::Map::new();
                if let Some(t) = call.temperature {
                    options.insert("temperature".into(), json!(t));
                }
                if let Some(n) = call.max_tokens {
                    options.insert("num_predict".into(), json!(n));
                }
                let mut body = json!({"model": call.model, "messages": messages, "stream": false});
                if !options.is_empty() {
                    body["options"] = Value::Object(options);
                }
                body
            }
        }
    }

    /// The headers of a request: content type, the key, the site headers.
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &self.api_key {
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", key.expose())) {
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            } else {
                tracing::warn!("the API key holds characters a header cannot carry; sent without");
            }
        }
        for (name, value) in &self.extra {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(*name, value);
            }
        }
        headers
    }

    /// One attempt: sends the call and reads at most `max_body` bytes of answer within
    /// `timeout`.
    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        call: &Call<'_>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Answer, AttemptError> {
        let request = client
            .post(&self.url)
            .headers(self.headers())
            .body(self.body(call).to_string());
        let exchange = async {
            let mut response = request
                .send()
                .await
                .map_err(|e| AttemptError::Connect(describe(e)))?;
            let status = response.status();
            let after = retry_after(response.headers());
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| AttemptError::Connect(describe(e)))?
            {
                if body.len() + chunk.len() > max_body {
                    return Err(AttemptError::TooLarge(max_body));
                }
                body.extend_from_slice(&chunk);
            }
            if status.as_u16() == 429 {
                return Err(AttemptError::RateLimited { retry_after: after });
            }
            if !status.is_success() {
                let excerpt = self.excerpt(status.as_u16(), &body);
                return Err(AttemptError::Status {
                    status: status.as_u16(),
                    excerpt,
                    retry_after: after,
                });
            }
            self.parse(&body)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::Timeout(timeout)),
        }
    }

    /// The start of an error body for the log and the reply, never with the key: providers
    /// echo (part of) a wrong key on 401/403, so those bodies are not shown at all.
    fn excerpt(&self, status: u16, body: &[u8]) -> String {
        if status == 401 || status == 403 {
            return "the provider refused the API key (the body is not shown: it may echo the key)"
                .to_owned();
        }
        // Replace the key before cutting, so a key cut in half cannot slip through.
        let mut text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]).into_owned();
        if let Some(key) = self.api_key.as_ref().map(Secret::expose) {
            if !key.is_empty() {
                text = text.replace(key, rosey_config::REDACTED);
            }
        }
        text.chars()
            .take(200)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    }

    /// Reads the answer of the provider's API.
    pub fn parse(&self, body: &[u8]) -> Result<Answer, AttemptError> {
        let malformed = |e: serde_json::Error| AttemptError::Malformed(e.to_string());
        match self.api {
            Api::OpenAi => {
                let a: OpenAiAnswer = serde_json::from_slice(body).map_err(malformed)?;
                let choice = a.choices.into_iter().next().ok_or_else(|| {
                    AttemptError::Malformed("no choices in the answer".to_owned())
                })?;
                let usage = a.usage.unwrap_or_default();
                Ok(Answer {
                    text: choice.message.content.unwrap_or_default(),
                    model: a.model.unwrap_or_default(),
                    usage: TokenUsage {
                        prompt_tokens: usage.prompt_tokens,
                        completion_tokens: usage.completion_tokens,
                    },
                })
            }
            Api::Ollama => {
                let a: OllamaAnswer = serde_json::from_slice(body).map_err(malformed)?;
                Ok(Answer {
                    text: a.message.content,
                    model: a.model.unwrap_or_default(),
                    usage: TokenUsage {
                        prompt_tokens: a.prompt_eval_count,
                        completion_tokens: a.eval_count,
                    },
                })
            }
        }
    }
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    model: Option<String>,
    choices: Vec<OpenAiChoice>,
    usage: Option<OpenAiUsage>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    message: OpenAiMessage,
}

#[derive(Deserialize)]
struct OpenAiMessage {
    content: Option<String>,
}

#[derive(Deserialize, Default)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Deserialize)]
struct OllamaAnswer {
    model: Option<String>,
    message: OllamaMessage,
    #[serde(default)]
    prompt_eval_count: u64,
    #[serde(default)]
    eval_count: u64,
}

#[derive(Deserialize)]
struct OllamaMessage {
    content: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rosey_plugin_api::llm::Role;

    fn config(provider: &str) -> LlmConfig {
        let mut llm = LlmConfig {
            provider: serde_json::from_value(json!(provider)).unwrap(),
            ..LlmConfig::default()
        };
        llm.openai.api_key = Some(Secret::new("sk-test-991"));
        llm.openrouter.api_key = Some(Secret::new("sk-or-992"));
        llm.openrouter.site_name = Some("Rosey".into());
        llm
    }

    fn msgs() -> Vec<ChatMessage> {
        vec![ChatMessage {
            role: Role::User,
            content: "hi".into(),
        }]
    }

    #[test]
    fn bodies_follow_each_api() {
        let m = msgs();
        let call = Call {
            model: "m",
            messages: &m,
            temperature: Some(0.5),
            max_tokens: Some(9),
        };
        let openai = Provider::from_config(&config("openai")).body(&call);
        assert_eq!(
            openai,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": false,
                   "temperature": 0.5, "max_tokens": 9})
        );
        let ollama = Provider::from_config(&config("ollama")).body(&call);
        assert_eq!(
            ollama,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": false,
                   "options": {"temperature": 0.5, "num_predict": 9}})
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        for p in ["openai", "openrouter"] {
            let provider = Provider::from_config(&config(p));
            let text = format!("{provider:?}");
            assert!(!text.contains("sk-"), "{text}");
            let headers = provider.headers();
            assert!(headers.get(AUTHORIZATION).unwrap().is_sensitive());
        }
        let or = Provider::from_config(&config("openrouter"));
        assert_eq!(or.headers().get("X-Title").unwrap(), "Rosey");
    }

    #[test]
    fn error_bodies_never_show_the_key() {
        let p = Provider::from_config(&config("openai"));
        assert!(!p
            .excerpt(401, b"Incorrect API key provided: sk-test-991")
            .contains("sk-"));
        assert_eq!(p.excerpt(500, b"oops sk-test-991 oops"), "oops *** oops");
    }

    #[test]
    fn answers_parse_and_nonsense_is_malformed() {
        let openai = Provider::from_config(&config("openai"));
        let a = openai
            .parse(br#"{"model":"x","choices":[{"message":{"content":"yo"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#)
            .unwrap();
        assert_eq!(a.text, "yo");
        assert_eq!(a.usage.prompt_tokens, 3);
        assert!(matches!(
            openai.parse(b"{\"choices\":[]}"),
            Err(AttemptError::Malformed(_))
        ));
        assert!(matches!(
            openai.parse(b"<html>"),
            Err(AttemptError::Malformed(_))
        ));
        let ollama = Provider::from_config(&config("ollama"));
        let a = ollama
            .parse(br#"{"model":"l","message":{"role":"assistant","content":"ok"},"prompt_eval_count":5,"eval_count":2}"#)
            .unwrap();
        assert_eq!((a.text.as_str(), a.usage.completion_tokens), ("ok", 2));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert_eq!(retry_after(&header("7")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
        assert_eq!(retry_after(&header("soon")), None);
        assert_eq!(retry_after(&header("-3")), None);
        // A date in the past: at once.
        assert_eq!(
            retry_after(&header("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
        // A date ahead: the pause until it (HTTP dates count whole seconds).
        let ahead = std::time::SystemTime::now() + Duration::from_secs(120);
        let wait = retry_after(&header(&httpdate::fmt_http_date(ahead))).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        // The obsolete RFC 850 form is read too.
        assert_eq!(
            retry_after(&header("Sunday, 06-Nov-94 08:49:37 GMT")),
            Some(Duration::ZERO)
        );
    }
}
