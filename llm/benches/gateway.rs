//! rosey-llm benchmarks with a real process, a private nats-server and a mock provider in this
//! process (OpenAI-compatible, keep-alive, HTTP answered by hand). Run
//! `cargo bench -p rosey-llm --bench gateway`; results go to BENCHMARKS.md by hand.
//!
//! - overhead: sequential chats through rosey-llm against sequential direct HTTP calls (reqwest,
//!   keep-alive, same body) to a mock that answers at once; the difference of the medians is
//!   what the gateway adds;
//! - load: 200 concurrent chats against a mock that takes 2 s per answer with
//!   `llm.gateway.concurrency` 200, timing the whole batch, while `rosey.llm.status` is asked
//!   back to back and its latency recorded.

use rosey_plugin_api::llm::{ChatReply, Status};
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects;
use rosey_tests::llm_support::read_http_request;
use rosey_tests::measure::percentile;
use rosey_tests::{wait_until_async, ChildGuard, NatsServer};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const SEQUENTIAL: usize = 2000;
const CONCURRENT: usize = 200;
const SLOW: Duration = Duration::from_secs(2);

fn answer_body() -> String {
    json!({"id": "c", "object": "chat.completion", "model": "bench",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 5, "completion_tokens": 1}})
    .to_string()
}

/// A keep-alive HTTP/1.1 server answering every request with a chat answer after `delay`.
async fn mock(delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).ok();
            tokio::spawn(serve(stream, delay));
        }
    });
    port
}

async fn serve(mut stream: TcpStream, delay: Duration) {
    let body = answer_body();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if read_http_request(&mut stream, &mut buf).await.is_none() {
            return;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Starts rosey-llm (the bench profile's binary) against the mock on `port`.
async fn gateway(
    nats: &NatsServer,
    port: u16,
    dir: &std::path::Path,
) -> (ChildGuard, async_nats::Client) {
    let config = json!({
        "nats": {"server": nats.url()},
        "llm": {"enabled": true, "provider": "openai",
                "openai": {"base_url": format!("http://127.0.0.1:{port}/v1"), "model": "bench",
                           "api_key": "sk-bench"},
                "gateway": {"concurrency": CONCURRENT, "plugin_requests_per_minute": 0,
                            "request_timeout": 30, "max_retries": 0}}
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rosey-llm"));
    cmd.arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = ChildGuard::spawn("rosey-llm", cmd);
    let client = nats.connect().await;
    let up = wait_until_async(Duration::from_secs(20), || async {
        status(&client).await.is_ok()
    })
    .await;
    assert!(up, "rosey-llm did not start");
    (child, client)
}

async fn status(
    client: &async_nats::Client,
) -> Result<Status, rosey_plugin_api::reply::RequestError> {
    request_json(
        client,
        subjects::llm::STATUS,
        &json!({}),
        Duration::from_secs(5),
    )
    .await
}

fn chat_body() -> serde_json::Value {
    json!({"messages": [{"role": "system", "content": "You are Rosey."},
                        {"role": "user", "content": "alice: hello there"}],
           "temperature": 0.7, "max_tokens": 100})
}

async fn overhead() {
    let port = mock(Duration::ZERO).await;
    let nats = NatsServer::start_without_jetstream();
    let dir = tempfile::tempdir().unwrap();
    let (_child, client) = gateway(&nats, port, dir.path()).await;

    // Direct: the same request body rosey-llm sends, over a keep-alive reqwest client.
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let body = json!({"model": "bench", "messages": chat_body()["messages"], "stream": false,
                      "temperature": 0.7, "max_tokens": 100})
    .to_string();
    let mut direct = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL + 200 {
        let t = Instant::now();
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-bench")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let bytes = r.bytes().await.unwrap();
        let _: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if i >= 200 {
            direct.push(t.elapsed());
        }
    }
    let mut via = Vec::with_capacity(SEQUENTIAL);
    let chat = chat_body();
    for i in 0..SEQUENTIAL + 200 {
        let t = Instant::now();
        let reply: ChatReply =
            request_json(&client, subjects::llm::CHAT, &chat, Duration::from_secs(10))
                .await
                .unwrap();
        assert_eq!(reply.text, "ok");
        if i >= 200 {
            via.push(t.elapsed());
        }
    }
    direct.sort();
    via.sort();
    println!("overhead ({SEQUENTIAL} sequential chats after 200 warm-up, instant mock provider)");
    println!(
        "  direct HTTP        p50 {}  p99 {}",
        ms(percentile(&direct, 0.5)),
        ms(percentile(&direct, 0.99))
    );
    println!(
        "  through rosey-llm  p50 {}  p99 {}",
        ms(percentile(&via, 0.5)),
        ms(percentile(&via, 0.99))
    );
    println!(
        "  added at p50       {}",
        ms(percentile(&via, 0.5).saturating_sub(percentile(&direct, 0.5)))
    );
}

async fn load() {
    let port = mock(SLOW).await;
    let nats = NatsServer::start_without_jetstream();
    let dir = tempfile::tempdir().unwrap();
    let (_child, client) = gateway(&nats, port, dir.path()).await;
    let chat = chat_body();
    let start = Instant::now();
    let mut chats = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT {
        let client = client.clone();
        let chat = chat.clone();
        chats.spawn(async move {
            let r: Result<ChatReply, _> =
                request_json(&client, subjects::llm::CHAT, &chat, Duration::from_secs(30)).await;
            (r.is_ok(), start.elapsed())
        });
    }
    let status_client = nats.connect().await;
    let prober = tokio::spawn(async move {
        let mut latencies = Vec::new();
        let mut max_in_flight = 0;
        while start.elapsed() < SLOW + Duration::from_millis(400) {
            let t = Instant::now();
            let s = status(&status_client).await.unwrap();
            latencies.push(t.elapsed());
            max_in_flight = max_in_flight.max(s.in_flight);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (latencies, max_in_flight)
    });
    let mut ok = 0;
    let mut last = Duration::ZERO;
    while let Some(joined) = chats.join_next().await {
        let (good, at) = joined.unwrap();
        ok += usize::from(good);
        last = last.max(at);
    }
    let (mut latencies, max_in_flight) = prober.await.unwrap();
    latencies.sort();
    println!(
        "load ({CONCURRENT} concurrent chats, provider takes {SLOW:?}, concurrency {CONCURRENT})"
    );
    println!(
        "  answered           {ok}/{CONCURRENT}, all within {}",
        ms(last)
    );
    println!("  most in flight     {max_in_flight}");
    println!(
        "  status during load {} requests, p50 {}  p99 {}  max {}",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        overhead().await;
        load().await;
    });
}
