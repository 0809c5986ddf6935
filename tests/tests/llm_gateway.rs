//! `rosey-llm` as a process, against mock providers written here (an OpenAI-compatible server
//! and an Ollama server, HTTP answered by hand on tokio) that record every request so the test
//! checks it exactly: path, auth header, model, messages in order, temperature, max tokens.

use async_nats::HeaderMap;
use rosey_plugin_api::actions::HEADER_SOURCE;
use rosey_plugin_api::llm::{ChatReply, Status, UsageReport};
use rosey_plugin_api::reply::{parse_reply, request_json, RequestError};
use rosey_plugin_api::subjects;
use rosey_plugin_api::{ErrorBody, ErrorCode};
use rosey_tests::llm_support::{ollama_ok, openai_ok, rosey_llm_answers, Answer, Mock};
use rosey_tests::{command, wait_until_async, ChildGuard, NatsServer};
use serde_json::{json, Value};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const PATIENCE: Duration = Duration::from_secs(20);
const KEY: &str = "sk-test-key-7c1e55a0d9";

// ---------------------------------------------------------------------------------------------
// rosey-llm as a process.

struct Gateway {
    _nats: NatsServer,
    client: async_nats::Client,
    process: ChildGuard,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts `rosey-llm` with `llm` as its `llm` section (gateway limits merged over quick
    /// test defaults), the key in its environment only, and waits until it answers status.
    async fn start(llm: Value) -> Gateway {
        let nats = NatsServer::start_without_jetstream();
        let client = nats.connect().await;
        let dir = tempfile::tempdir().unwrap();
        let mut section = json!({
            "enabled": true,
            "gateway": {"request_timeout": 10, "max_retries": 2, "retry_backoff": 0.05,
                        "max_retry_wait": 5, "concurrency": 8, "plugin_requests_per_minute": 100,
                        "max_prompt_bytes": 4096, "max_response_bytes": 65536}
        });
        merge(&mut section, &llm);
        let config = json!({
            "nats": {"server": nats.url()},
            "logging": {"llm_log_file": "llm.log"},
            "llm": section,
        });
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = command("rosey-llm");
        cmd.arg("--config")
            .arg(&path)
            .env("ROSEY_TEST_LLM_KEY", KEY)
            // Every log line of every crate, so the key check covers them all.
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(stderr);
        let process = ChildGuard::spawn("rosey-llm", cmd);
        let up = rosey_llm_answers(&client, PATIENCE).await;
        assert!(up, "rosey-llm did not answer status: {}", stderr_of(&dir));
        Gateway {
            _nats: nats,
            client,
            process,
            dir,
        }
    }

    /// Sends a chat as `source` (the runtime's header) and returns the reply or the error.
    async fn chat_as(&self, source: Option<&str>, body: &Value) -> Result<ChatReply, ErrorBody> {
        let mut headers = HeaderMap::new();
        if let Some(source) = source {
            headers.insert(HEADER_SOURCE, source);
        }
        let request = async_nats::Request::new()
            .payload(body.to_string().into())
            .headers(headers)
            .timeout(Some(Duration::from_secs(60)));
        let msg = self
            .client
            .send_request(subjects::llm::CHAT.to_owned(), request)
            .await
            .expect("rosey-llm answers");
        match parse_reply::<ChatReply>(subjects::llm::CHAT, &msg) {
            Ok(reply) => Ok(reply),
            Err(RequestError::Service(body, _)) => Err(body),
            Err(other) => panic!("unexpected reply: {other}"),
        }
    }

    async fn chat(&self, body: &Value) -> Result<ChatReply, ErrorBody> {
        self.chat_as(Some("llm"), body).await
    }

    async fn status(&self) -> Status {
        request_json(
            &self.client,
            subjects::llm::STATUS,
            &json!({}),
            Duration::from_secs(5),
        )
        .await
        .expect("status")
    }

    fn stderr(&self) -> String {
        stderr_of(&self.dir)
    }

    fn llm_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("llm.log")).unwrap_or_default()
    }

    /// Stops the process and returns everything it wrote on stderr.
    fn stop(mut self) -> String {
        self.process.terminate(Duration::from_secs(10));
        self.stderr()
    }
}

fn stderr_of(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default()
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn openai_section(mock: &Mock) -> Value {
    json!({"provider": "openai",
           "openai": {"base_url": format!("{}/v1", mock.base()), "model": "gpt-test",
                      "api_key_env": "ROSEY_TEST_LLM_KEY"}})
}

fn conversation() -> Value {
    json!({"messages": [
        {"role": "system", "content": "You are Rosey."},
        {"role": "user", "content": "alice: hi"},
        {"role": "assistant", "content": "hello alice"},
        {"role": "user", "content": "alice: what is NATS?"}
    ], "temperature": 0.3, "max_tokens": 50})
}

fn simple(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn openai_compatible_round_trip_sends_exactly_the_conversation() {
    let mock = Mock::start(openai_ok("NATS is a message bus.", "gpt-test-0613")).await;
    let gw = Gateway::start(openai_section(&mock)).await;
    let reply = gw.chat(&conversation()).await.expect("answered");
    assert_eq!(reply.text, "NATS is a message bus.");
    assert_eq!(reply.model, "gpt-test-0613");
    assert_eq!(reply.usage.prompt_tokens, 21);
    assert_eq!(reply.usage.completion_tokens, 4);

    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.body,
        json!({"model": "gpt-test", "stream": false, "temperature": 0.3, "max_tokens": 50,
               "messages": conversation()["messages"]})
    );

    // A request naming a model and no sampling settings sends exactly that.
    mock.push(openai_ok("ok", "other"));
    let mut body = simple("x");
    body["model"] = json!("other-model");
    gw.chat(&body).await.expect("answered");
    assert_eq!(
        mock.seen()[1].body,
        json!({"model": "other-model", "stream": false, "messages": [{"role": "user", "content": "x"}]})
    );

    // The LLM log has one line per chat with the prompt and the answer.
    let log = gw.llm_log();
    assert!(
        log.contains(
            "source=llm model=gpt-test prompt=alice: what is NATS? answer=NATS is a message bus."
        ),
        "{log}"
    );

    // $SRV discovery knows the service.
    let ping = gw
        .client
        .request(format!("{}.rosey-llm", subjects::service::PING), "".into())
        .await
        .expect("ping");
    let ping: Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "rosey-llm");
    let usage: UsageReport = request_json(
        &gw.client,
        subjects::llm::USAGE,
        &json!({}),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(usage.total.answered, 2);
    assert_eq!(usage.by_source["llm"].prompt_tokens, 42);
}

#[tokio::test]
async fn openrouter_sends_its_site_headers() {
    let mock = Mock::start(openai_ok("hi", "meta/llama")).await;
    let gw = Gateway::start(json!({"provider": "openrouter",
        "openrouter": {"base_url": format!("{}/api/v1", mock.base()), "model": "meta/llama",
                       "api_key_env": "ROSEY_TEST_LLM_KEY", "site_url": "https://rosey.example",
                       "site_name": "Rosey Bot"}}))
    .await;
    gw.chat(&simple("hello")).await.expect("answered");
    let r = &mock.seen()[0];
    assert_eq!(r.path, "/api/v1/chat/completions");
    assert_eq!(r.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(r.headers["http-referer"], "https://rosey.example");
    assert_eq!(r.headers["x-title"], "Rosey Bot");
    assert_eq!(r.body["model"], "meta/llama");
}

#[tokio::test]
async fn ollama_round_trip_uses_the_native_chat_api() {
    let mock = Mock::start(ollama_ok("Hi there!", "llama3.2:latest")).await;
    let gw = Gateway::start(json!({"provider": "ollama",
        "ollama": {"base_url": mock.base(), "model": "llama3.2"}}))
    .await;
    let reply = gw.chat(&conversation()).await.expect("answered");
    assert_eq!(reply.text, "Hi there!");
    assert_eq!(reply.model, "llama3.2:latest");
    assert_eq!(reply.usage.prompt_tokens, 17);
    assert_eq!(reply.usage.completion_tokens, 6);
    let r = &mock.seen()[0];
    assert_eq!(r.path, "/api/chat");
    assert!(!r.headers.contains_key("authorization"));
    assert_eq!(
        r.body,
        json!({"model": "llama3.2", "stream": false,
               "options": {"temperature": 0.3, "num_predict": 50},
               "messages": conversation()["messages"]})
    );
}

#[tokio::test]
async fn a_provider_that_is_down_is_unavailable_after_the_retries() {
    // A port nobody listens on: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gw = Gateway::start(json!({"provider": "ollama",
        "ollama": {"base_url": format!("http://127.0.0.1:{port}"), "model": "m"}}))
    .await;
    let err = gw.chat(&simple("hi")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::Unavailable, "{err}");
    assert!(
        err.error
            .message
            .starts_with("provider unavailable: cannot reach the provider"),
        "{err}"
    );
    let status = gw.status().await;
    assert_eq!(status.in_flight, 0);
    assert!(status.last_error.unwrap().contains("cannot reach"));
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_answered() {
    let mock = Mock::start(openai_ok("finally", "gpt-test")).await;
    mock.push(Answer::Http(
        429,
        vec![("Retry-After", "1".into())],
        "{\"error\":\"slow down\"}".into(),
    ));
    let gw = Gateway::start(openai_section(&mock)).await;
    let reply = gw
        .chat(&simple("hi"))
        .await
        .expect("answered after the wait");
    assert_eq!(reply.text, "finally");
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].body, seen[1].body,
        "the retry sends the same request"
    );
    assert!(
        seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1),
        "Retry-After honoured"
    );

    // A provider that keeps refusing ends as rate limited after 1 + max_retries attempts.
    *mock.default.lock().unwrap() =
        Answer::Http(429, vec![("Retry-After", "0".into())], "{}".into());
    let err = gw.chat(&simple("again")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::RateLimited, "{err}");
    assert_eq!(mock.seen().len(), 2 + 3);

    // A Retry-After longer than max_retry_wait fails at once rather than hold the chat.
    mock.push(Answer::Http(
        429,
        vec![("Retry-After", "3600".into())],
        "{}".into(),
    ));
    let err = gw.chat(&simple("later")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::RateLimited);
    assert_eq!(mock.seen().len(), 2 + 3 + 1);
}

#[tokio::test]
async fn a_retry_after_given_as_an_http_date_is_honoured() {
    let mock = Mock::start(openai_ok("after the date", "gpt-test")).await;
    let gw = Gateway::start(openai_section(&mock)).await;
    // A date an hour ahead is past max_retry_wait (5 s): rate limited at once, no retry (the
    // 50 ms backoff would have retried twice had the date been ignored).
    let in_an_hour = std::time::SystemTime::now() + Duration::from_secs(3600);
    mock.push(Answer::Http(
        429,
        vec![("Retry-After", httpdate::fmt_http_date(in_an_hour))],
        "{}".into(),
    ));
    let err = gw.chat(&simple("later")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::RateLimited, "{err}");
    assert_eq!(mock.seen().len(), 1, "no retry before the date");

    // A date three seconds ahead (whole seconds: at least two of them left) is waited out.
    let soon = std::time::SystemTime::now() + Duration::from_secs(3);
    mock.push(Answer::Http(
        503,
        vec![("Retry-After", httpdate::fmt_http_date(soon))],
        "busy".into(),
    ));
    let reply = gw
        .chat(&simple("hi"))
        .await
        .expect("answered after the date");
    assert_eq!(reply.text, "after the date");
    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen[2].at.duration_since(seen[1].at) >= Duration::from_millis(1500),
        "the retry waited for the date, not the 50 ms backoff"
    );
}

#[tokio::test]
async fn a_500_is_retried_and_a_lasting_one_is_unavailable() {
    let mock = Mock::start(openai_ok("recovered", "gpt-test")).await;
    mock.push(Answer::Http(500, vec![], "{\"error\":\"boom\"}".into()));
    let gw = Gateway::start(openai_section(&mock)).await;
    assert_eq!(gw.chat(&simple("hi")).await.unwrap().text, "recovered");
    assert_eq!(mock.seen().len(), 2);

    *mock.default.lock().unwrap() = Answer::Http(503, vec![], "upstream overloaded".into());
    let err = gw.chat(&simple("hi")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::Unavailable);
    assert!(
        err.error.message.contains("HTTP 503: upstream overloaded"),
        "{err}"
    );
    assert_eq!(mock.seen().len(), 2 + 3);
}

#[tokio::test]
async fn malformed_and_huge_bodies_are_clear_errors() {
    let mock = Mock::start(Answer::Http(200, vec![], "<html>not json</html>".into())).await;
    let gw = Gateway::start(openai_section(&mock)).await;
    let err = gw.chat(&simple("hi")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::Unavailable);
    assert!(err.error.message.contains("not a chat answer"), "{err}");
    assert_eq!(mock.seen().len(), 1, "a malformed answer is not retried");

    mock.push(Answer::Http(200, vec![], "{\"choices\": []}".into()));
    let err = gw.chat(&simple("hi")).await.unwrap_err();
    assert!(err.error.message.contains("no choices"), "{err}");

    // An answer over max_response_bytes (64 KiB here).
    let huge = format!(
        "{{\"choices\":[{{\"message\":{{\"content\":\"{}\"}}}}]}}",
        "a".repeat(1 << 20)
    );
    mock.push(Answer::Http(200, vec![], huge));
    let err = gw.chat(&simple("hi")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::Unavailable);
    assert!(err.error.message.contains("over 65536 bytes"), "{err}");

    // A prompt over max_prompt_bytes (4096 here) never reaches the provider.
    let before = mock.seen().len();
    let err = gw.chat(&simple(&"b".repeat(5000))).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::TooLarge);
    assert!(err.error.message.contains("limit is 4096"), "{err}");
    // Requests that are not chats at all.
    for bad in [
        json!([1, 2]),
        json!({"messages": []}),
        json!({"messages": [{"role": "robot", "content": "x"}]}),
        json!({"messages": [{"role": "user", "content": "x"}], "temperature": 9}),
    ] {
        let err = gw.chat(&bad).await.unwrap_err();
        assert_eq!(err.error.code, ErrorCode::InvalidJson, "{bad}: {err}");
    }
    assert_eq!(mock.seen().len(), before);
    // The gateway is still fine.
    mock.push(openai_ok("still here", "gpt-test"));
    assert_eq!(gw.chat(&simple("hi")).await.unwrap().text, "still here");
}

#[tokio::test]
async fn a_provider_slower_than_the_timeout_is_a_timeout_error() {
    let mock = Mock::start(Answer::Slow(
        Duration::from_secs(30),
        Box::new(openai_ok("too late", "gpt-test")),
    ))
    .await;
    let mut section = openai_section(&mock);
    section["gateway"] = json!({"request_timeout": 1});
    let gw = Gateway::start(section).await;
    let err = gw.chat(&simple("hi")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::Timeout, "{err}");
    assert_eq!(
        err.error.message,
        "provider timed out: the provider did not answer within 1s"
    );
    assert_eq!(mock.seen().len(), 1, "a timeout is not retried");
}

#[tokio::test]
async fn status_answers_while_a_slow_chat_is_pending() {
    let gate = Arc::new(Notify::new());
    let mock = Mock::start(openai_ok("done", "gpt-test")).await;
    mock.push(Answer::Gated(
        gate.clone(),
        Box::new(openai_ok("slow one", "gpt-test")),
    ));
    let gw = Arc::new(Gateway::start(openai_section(&mock)).await);
    let pending = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.chat(&simple("slow")).await })
    };
    // The chat is at the provider, held there by the gate...
    let held = wait_until_async(PATIENCE, || async { gw.status().await.in_flight == 1 }).await;
    assert!(held, "the chat never reached the provider");
    // ...and status, usage and another chat are answered meanwhile.
    for _ in 0..20 {
        let status = gw.status().await;
        assert_eq!(status.in_flight, 1);
        assert_eq!(status.provider, "openai");
    }
    assert_eq!(gw.chat(&simple("fast")).await.unwrap().text, "done");
    assert!(!pending.is_finished());
    gate.notify_one();
    assert_eq!(pending.await.unwrap().unwrap().text, "slow one");
    assert_eq!(gw.status().await.in_flight, 0);
}

#[tokio::test]
async fn each_plugin_has_its_own_budget() {
    let mock = Mock::start(openai_ok("ok", "gpt-test")).await;
    let mut section = openai_section(&mock);
    section["gateway"] = json!({"plugin_requests_per_minute": 2});
    let gw = Gateway::start(section).await;
    for _ in 0..2 {
        gw.chat_as(Some("quotes"), &simple("q"))
            .await
            .expect("within budget");
    }
    let err = gw.chat_as(Some("quotes"), &simple("q")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::RateLimited);
    assert!(
        err.error.message.contains("quotes has used its 2 chats"),
        "{err}"
    );
    assert_eq!(
        mock.seen().len(),
        2,
        "an over-budget chat never reaches the provider"
    );
    // Another plugin, and Rosey's own unnamed requests, are not affected.
    gw.chat_as(Some("markov"), &simple("m"))
        .await
        .expect("markov's own budget");
    gw.chat_as(None, &simple("op"))
        .await
        .expect("no source, no budget");
    let usage: UsageReport = request_json(
        &gw.client,
        subjects::llm::USAGE,
        &json!({}),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(usage.by_source["quotes"].answered, 2);
    assert_eq!(usage.by_source["quotes"].over_budget, 1);
    assert_eq!(usage.by_source["markov"].answered, 1);
    assert_eq!(usage.by_source["-"].answered, 1);
    assert_eq!(usage.total.answered, 4);
}

#[tokio::test]
async fn the_key_shows_up_in_no_log_line_reply_or_log_file() {
    // The provider echoes the key on a 401 and in a 500, as real ones do.
    let mock = Mock::start(openai_ok("fine", "gpt-test")).await;
    mock.push(Answer::Http(
        401,
        vec![],
        format!("{{\"error\":\"Incorrect API key provided: {KEY}\"}}"),
    ));
    mock.push(Answer::Http(
        500,
        vec![],
        format!("internal error with {KEY} inside"),
    ));
    mock.push(Answer::Http(
        500,
        vec![],
        format!("internal error with {KEY} inside"),
    ));
    mock.push(Answer::Http(
        500,
        vec![],
        format!("internal error with {KEY} inside"),
    ));
    let gw = Gateway::start(openai_section(&mock)).await;
    let refused = gw.chat(&simple("one")).await.unwrap_err();
    assert_eq!(refused.error.code, ErrorCode::Unavailable);
    assert!(refused.error.message.contains("HTTP 401"), "{refused}");
    let echoed = gw.chat(&simple("two")).await.unwrap_err();
    assert!(
        echoed
            .error
            .message
            .contains("internal error with *** inside"),
        "{echoed}"
    );
    gw.chat(&simple("three")).await.expect("answered");
    // The key did go to the provider, in the header only.
    assert!(mock
        .seen()
        .iter()
        .all(|r| r.headers["authorization"] == format!("Bearer {KEY}")));
    let status = gw.status().await;
    let usage: Value = request_json(
        &gw.client,
        subjects::llm::USAGE,
        &json!({}),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let stats = gw
        .client
        .request(format!("{}.rosey-llm", subjects::service::STATS), "".into())
        .await
        .unwrap();
    let info = gw
        .client
        .request(format!("{}.rosey-llm", subjects::service::INFO), "".into())
        .await
        .unwrap();
    let llm_log = gw.llm_log();
    let stderr = gw.stop();
    assert!(stderr.lines().count() > 5, "trace logging was on: {stderr}");
    let everything = [
        refused.to_string(),
        echoed.to_string(),
        format!("{status:?}"),
        usage.to_string(),
        String::from_utf8_lossy(&stats.payload).into_owned(),
        String::from_utf8_lossy(&info.payload).into_owned(),
        llm_log,
        stderr,
    ];
    for (i, text) in everything.iter().enumerate() {
        assert!(!text.contains(KEY), "item {i} shows the key: {text}");
        assert!(
            !text.contains("7c1e55a0d9"),
            "item {i} shows part of the key: {text}"
        );
    }
}

#[tokio::test]
async fn rosey_status_and_config_check_know_the_gateway() {
    let mock = Mock::start(openai_ok("ok", "gpt-test")).await;
    mock.push(Answer::Http(500, vec![], "down".into()));
    mock.push(Answer::Http(500, vec![], "down".into()));
    mock.push(Answer::Http(500, vec![], "down".into()));
    let gw = Gateway::start(openai_section(&mock)).await;
    gw.chat(&simple("hi")).await.unwrap_err();
    let config = gw.dir.path().join("config.json");
    let out = command("rosey")
        .arg("status")
        .arg("--config")
        .arg(&config)
        .env("ROSEY_TEST_LLM_KEY", KEY)
        .output()
        .expect("run rosey status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rosey-llm    up (version"), "{stdout}");
    assert!(
        stdout.contains("llm          openai with gpt-test, 0 chat(s) in flight, 0 queued (limit 8); last error: provider unavailable: the provider answered HTTP 500: down"),
        "{stdout}"
    );
    let out = command("rosey")
        .args(["config", "check"])
        .arg(&config)
        .env("ROSEY_TEST_LLM_KEY", KEY)
        .output()
        .expect("run rosey config check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "llm: enabled, provider openai with model gpt-test (rosey up starts rosey-llm)"
        ),
        "{stderr}"
    );
    assert!(
        !stdout.contains(KEY) && stdout.contains("\"api_key\": \"***\""),
        "{stdout}"
    );
}

#[tokio::test]
async fn two_instances_share_the_chats_through_the_queue_group() {
    let mock = Mock::start(openai_ok("ok", "gpt-test")).await;
    let gw = Gateway::start(openai_section(&mock)).await;
    // A second rosey-llm on the same configuration and server.
    let stderr = std::fs::File::create(gw.dir.path().join("stderr-2.log")).unwrap();
    let mut cmd = command("rosey-llm");
    cmd.arg("--config")
        .arg(gw.dir.path().join("config.json"))
        .env("ROSEY_TEST_LLM_KEY", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr);
    let _second = ChildGuard::spawn("rosey-llm (second)", cmd);
    let stats = || async {
        let mut replies = Vec::new();
        let inbox = gw.client.new_inbox();
        let mut sub = gw.client.subscribe(inbox.clone()).await.unwrap();
        gw.client
            .publish_with_reply(
                format!("{}.rosey-llm", subjects::service::STATS),
                inbox,
                "".into(),
            )
            .await
            .unwrap();
        while let Ok(Some(msg)) = tokio::time::timeout(
            Duration::from_millis(500),
            futures::StreamExt::next(&mut sub),
        )
        .await
        {
            replies.push(serde_json::from_slice::<Value>(&msg.payload).unwrap());
        }
        replies
    };
    let both = wait_until_async(PATIENCE, || async { stats().await.len() == 2 }).await;
    assert!(both, "the second instance never answered $SRV.STATS");
    // Every chat is answered exactly once, and both instances answer some (40 chats picked at
    // random between two members: all on one side has a chance of 2^-39).
    for i in 0..40 {
        gw.chat(&simple(&format!("line {i}")))
            .await
            .expect("answered");
    }
    assert_eq!(mock.seen().len(), 40, "each chat reached the provider once");
    let answered: Vec<u64> = stats()
        .await
        .iter()
        .map(|s| {
            s["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "chat")
                .map(|e| e["data"]["total"]["answered"].as_u64().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(answered.iter().sum::<u64>(), 40, "{answered:?}");
    assert!(answered.iter().all(|n| *n > 0), "{answered:?}");
}

#[tokio::test]
async fn a_chat_waits_for_a_free_slot_at_most_one_timeout() {
    let mock = Mock::start(openai_ok("done", "gpt-test")).await;
    // The first chat holds the only slot through a 5 s Retry-After pause.
    mock.push(Answer::Http(
        429,
        vec![("Retry-After", "5".into())],
        "{}".into(),
    ));
    let mut section = openai_section(&mock);
    section["gateway"] = json!({"concurrency": 1, "request_timeout": 1, "max_retry_wait": 10});
    let gw = Arc::new(Gateway::start(section).await);
    let pending = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.chat(&simple("first")).await })
    };
    let held = wait_until_async(PATIENCE, || async { mock.seen().len() == 1 }).await;
    assert!(held, "the first chat never reached the provider");
    // The next chat gives up after one timeout (1 s), well before the slot frees, never sent.
    let err = gw.chat(&simple("second")).await.unwrap_err();
    assert_eq!(err.error.code, ErrorCode::Timeout, "{err}");
    assert_eq!(
        err.error.message,
        "gateway busy: no free slot within 1s: 1 chats are already at the provider"
    );
    assert_eq!(mock.seen().len(), 1);
    assert_eq!(pending.await.unwrap().unwrap().text, "done");
    assert_eq!(mock.seen().len(), 2);
    assert_eq!(gw.chat(&simple("third")).await.unwrap().text, "done");
}
