//! A chat from request to answer: checks, the sender's budget, a concurrency slot, attempts
//! with retries, counters, and the contract's error for every failure.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rosey_config::{GatewayConfig, LlmConfig};
use rosey_plugin_api::llm::{ChatReply, ChatRequest, SenderUsage, Status, UsageReport};
use rosey_plugin_api::{ErrorBody, ErrorCode};
use tokio::sync::Semaphore;

use crate::log_file::LlmLog;
use crate::provider::{AttemptError, Call, Provider};

/// The sender name counted for requests without a `Rosey-Source` header.
pub const ANONYMOUS: &str = "-";

/// How long a budget's window is.
const BUDGET_WINDOW: Duration = Duration::from_secs(60);

/// Everything the request handlers share.
pub struct Gateway {
    provider: Provider,
    client: reqwest::Client,
    limits: GatewayConfig,
    slots: Semaphore,
    in_flight: AtomicU64,
    queued: AtomicU64,
    budgets: Mutex<HashMap<String, VecDeque<Instant>>>,
    usage: Mutex<UsageReport>,
    last_error: Mutex<Option<String>>,
    log: Option<LlmLog>,
}

/// How a chat ended, for the counters.
enum Outcome {
    Answered(rosey_plugin_api::llm::TokenUsage),
    Failed,
    OverBudget,
}

impl Gateway {
    /// A gateway for the `llm` section; `log` receives each chat when `logging.llm_log_file`
    /// is set.
    pub fn new(llm: &LlmConfig, log: Option<LlmLog>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            // The per-attempt timeout is applied around the whole exchange; this only bounds
            // the connection so a black-holed address fails fast enough to retry.
            .connect_timeout(llm.gateway.request_timeout.as_duration())
            .pool_max_idle_per_host(llm.gateway.concurrency)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(Gateway {
            provider: Provider::from_config(llm),
            client,
            slots: Semaphore::new(llm.gateway.concurrency),
            limits: llm.gateway.clone(),
            in_flight: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            budgets: Mutex::new(HashMap::new()),
            usage: Mutex::new(UsageReport::default()),
            last_error: Mutex::new(None),
            log,
        })
    }

    /// The reply to `rosey.llm.status`; never waits on a chat.
    pub fn status(&self) -> Status {
        Status {
            provider: self.provider.name.as_str().to_owned(),
            default_model: self.provider.default_model.clone(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            concurrency: self.limits.concurrency as u64,
            last_error: lock(&self.last_error).clone(),
        }
    }

    /// The reply to `rosey.llm.usage`.
    pub fn usage(&self) -> UsageReport {
        lock(&self.usage).clone()
    }

    /// Answers a chat from `source` (the plugin's name, or [`ANONYMOUS`]).
    pub async fn chat(&self, source: &str, request: ChatRequest) -> Result<ChatReply, ErrorBody> {
        let started = Instant::now();
        if let Err(e) = self.check(&request) {
            self.count(source, Outcome::Failed);
            return Err(e);
        }
        if !self.spend_budget(source) {
            self.count(source, Outcome::OverBudget);
            return Err(ErrorBody::new(
                ErrorCode::RateLimited,
                format!(
                    "{source} has used its {} chats of the last minute; try again later",
                    self.limits.plugin_requests_per_minute
                ),
            ));
        }
        let model = request
            .model
            .clone()
            .unwrap_or_else(|| self.provider.default_model.clone());
        let call = Call {
            model: &model,
            messages: &request.messages,
            temperature: request.temperature,
            max_tokens: request.max_tokens,
        };
        let result = self.call_with_retries(&call).await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(answer) => {
                self.count(source, Outcome::Answered(answer.usage));
                *lock(&self.last_error) = None;
                if let Some(log) = &self.log {
                    log.answered(source, &model, &request.messages, &answer.text)
                        .await;
                }
                Ok(ChatReply {
                    model: if answer.model.is_empty() {
                        model
                    } else {
                        answer.model
                    },
                    text: answer.text,
                    usage: answer.usage,
                    latency_ms,
                })
            }
            Err(error) => {
                self.count(source, Outcome::Failed);
                let body = to_error_body(&error);
                tracing::warn!(source, model = %model, error = %error, "chat failed");
                *lock(&self.last_error) = Some(body.error.message.clone());
                if let Some(log) = &self.log {
                    log.failed(source, &model, &request.messages, &body.error.message)
                        .await;
                }
                Err(body)
            }
        }
    }

    /// Rejects requests the provider should never see.
    fn check(&self, request: &ChatRequest) -> Result<(), ErrorBody> {
        let invalid = |m: &str| Err(ErrorBody::new(ErrorCode::InvalidJson, m));
        if request.messages.is_empty() {
            return invalid("messages must hold at least one message");
        }
        if request
            .model
            .as_deref()
            .is_some_and(|m| m.trim().is_empty())
        {
            return invalid("model must not be empty (leave it out for the default)");
        }
        if request
            .temperature
            .is_some_and(|t| !(0.0..=2.0).contains(&t))
        {
            return invalid("temperature must be between 0 and 2");
        }
        if request.max_tokens == Some(0) {
            return invalid("max_tokens must be greater than 0");
        }
        let size: usize = request.messages.iter().map(|m| m.content.len()).sum();
        if size > self.limits.max_prompt_bytes {
            return Err(ErrorBody::new(
                ErrorCode::TooLarge,
                format!(
                    "the messages hold {size} bytes; the limit is {}",
                    self.limits.max_prompt_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Takes one chat from the sender's budget, or says it is spent. Requests without a source
    /// come from Rosey's own processes (plugins always carry one), so they have no budget.
    fn spend_budget(&self, source: &str) -> bool {
        let limit = self.limits.plugin_requests_per_minute as usize;
        if limit == 0 || source == ANONYMOUS {
            return true;
        }
        let now = Instant::now();
        let mut budgets = lock(&self.budgets);
        let window = budgets.entry(source.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= BUDGET_WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= limit {
            return false;
        }
        window.push_back(now);
        true
    }

    /// Waits for a slot, then tries up to `1 + max_retries` times.
    async fn call_with_retries(
        &self,
        call: &Call<'_>,
    ) -> Result<crate::provider::Answer, AttemptError> {
        let timeout = self.limits.request_timeout.as_duration();
        self.queued.fetch_add(1, Ordering::Relaxed);
        // A chat waits for a slot at most one timeout: its sender is gone by then anyway.
        let permit = tokio::time::timeout(timeout, self.slots.acquire()).await;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let _permit = match permit {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(AttemptError::Connect("the gateway is stopping".to_owned())),
            Err(_) => return Err(AttemptError::Busy(timeout, self.limits.concurrency)),
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.in_flight);
        let mut attempt = 0u32;
        loop {
            let result = self
                .provider
                .attempt(&self.client, call, timeout, self.limits.max_response_bytes)
                .await;
            let error = match result {
                Ok(answer) => return Ok(answer),
                Err(e) => e,
            };
            if !error.is_retryable() || attempt >= self.limits.max_retries {
                return Err(error);
            }
            let backoff = self
                .limits
                .retry_backoff
                .as_duration()
                .saturating_mul(1 << attempt.min(16));
            let wait = error.retry_after().unwrap_or(backoff);
            if wait > self.limits.max_retry_wait.as_duration() {
                // The provider asks for a longer pause than a chat can wait: say so now.
                return Err(error);
            }
            tracing::debug!(attempt, ?wait, error = %error, "retrying the provider");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    fn count(&self, source: &str, outcome: Outcome) {
        let mut usage = lock(&self.usage);
        let apply = |u: &mut SenderUsage| match outcome {
            Outcome::Answered(t) => {
                u.answered += 1;
                u.prompt_tokens += t.prompt_tokens;
                u.completion_tokens += t.completion_tokens;
            }
            Outcome::Failed => u.failed += 1,
            Outcome::OverBudget => u.over_budget += 1,
        };
        apply(&mut usage.total);
        apply(usage.by_source.entry(source.to_owned()).or_default());
    }

    /// Counters for `$SRV.STATS`.
    pub fn stats_json(&self) -> serde_json::Value {
        let usage = self.usage();
        let by_source: BTreeMap<_, _> = usage.by_source.into_iter().collect();
        serde_json::json!({"total": usage.total, "by_source": by_source})
    }
}

/// Decrements the in-flight count however the call ends.
struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A poisoned lock only means a panic elsewhere mid-update of counters; keep serving.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The contract's error for a provider failure.
pub fn to_error_body(error: &AttemptError) -> ErrorBody {
    let (code, prefix) = match error {
        AttemptError::Connect(_)
        | AttemptError::Status { .. }
        | AttemptError::Malformed(_)
        | AttemptError::TooLarge(_) => (ErrorCode::Unavailable, "provider unavailable"),
        AttemptError::RateLimited { .. } => (ErrorCode::RateLimited, "provider rate limited"),
        AttemptError::Timeout(_) => (ErrorCode::Timeout, "provider timed out"),
        AttemptError::Busy(..) => (ErrorCode::Timeout, "gateway busy"),
    };
    ErrorBody::new(code, format!("{prefix}: {error}"))
}

/// Shared handle.
pub type SharedGateway = Arc<Gateway>;

#[cfg(test)]
mod tests {
    use super::*;
    use rosey_plugin_api::llm::{ChatMessage, Role};

    fn gateway(per_minute: u32) -> Gateway {
        let llm = LlmConfig {
            gateway: GatewayConfig {
                plugin_requests_per_minute: per_minute,
                max_prompt_bytes: 10,
                ..GatewayConfig::default()
            },
            ..LlmConfig::default()
        };
        Gateway::new(&llm, None).unwrap()
    }

    fn request(text: &str) -> ChatRequest {
        ChatRequest {
            messages: vec![ChatMessage {
                role: Role::User,
                content: text.into(),
            }],
            model: None,
            temperature: None,
            max_tokens: None,
        }
    }

    #[test]
    fn budgets_are_per_source_and_anonymous_is_free() {
        let g = gateway(2);
        assert!(g.spend_budget("a"));
        assert!(g.spend_budget("a"));
        assert!(!g.spend_budget("a"));
        assert!(g.spend_budget("b"));
        for _ in 0..5 {
            assert!(g.spend_budget(ANONYMOUS));
        }
        let unlimited = gateway(0);
        for _ in 0..100 {
            assert!(unlimited.spend_budget("a"));
        }
    }

    #[test]
    fn bad_requests_are_refused_with_their_code() {
        let g = gateway(0);
        assert!(g.check(&request("short")).is_ok());
        assert_eq!(
            g.check(&request("far too long")).unwrap_err().error.code,
            ErrorCode::TooLarge
        );
        let mut empty = request("x");
        empty.messages.clear();
        assert_eq!(
            g.check(&empty).unwrap_err().error.code,
            ErrorCode::InvalidJson
        );
        let mut hot = request("x");
        hot.temperature = Some(7.0);
        assert_eq!(
            g.check(&hot).unwrap_err().error.code,
            ErrorCode::InvalidJson
        );
    }
}
