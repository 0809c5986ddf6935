//! Shared by the LLM tests: a mock LLM provider written here (an OpenAI-compatible or Ollama
//! server, HTTP answered by hand on tokio) that records every request so a test checks it
//! exactly, and answers from a script (statuses, headers, bodies, delays, gates); and the wait
//! for rosey-llm to answer.

use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The body, parsed as JSON.
    pub body: Value,
    /// When the mock received it.
    pub at: Instant,
}

/// How the mock answers one request.
#[derive(Clone)]
pub enum Answer {
    /// A status, extra headers and a body.
    Http(u16, Vec<(&'static str, String)>, String),
    /// Waits until the gate is opened, then answers.
    Gated(Arc<Notify>, Box<Answer>),
    /// Waits this long, then answers.
    Slow(Duration, Box<Answer>),
}

/// The running mock provider: what it received, and the answers it will give.
#[derive(Clone)]
pub struct Mock {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// The answer given when no scripted answer is queued (a test may change it).
    pub default: Arc<Mutex<Answer>>,
}

/// A successful OpenAI-compatible chat completion answering `text`.
pub fn openai_ok(text: &str, model: &str) -> Answer {
    Answer::Http(
        200,
        vec![],
        json!({"id": "c1", "object": "chat.completion", "model": model,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}})
        .to_string(),
    )
}

/// A successful Ollama chat answer answering `text`.
pub fn ollama_ok(text: &str, model: &str) -> Answer {
    Answer::Http(
        200,
        vec![],
        json!({"model": model, "created_at": "2024-01-01T00:00:00Z",
               "message": {"role": "assistant", "content": text}, "done": true,
               "prompt_eval_count": 17, "eval_count": 6})
        .to_string(),
    )
}

/// Reads one HTTP/1.1 request from `stream`: its head (request line and headers, without the
/// blank line) and its body (`Content-Length` bytes). `buf` keeps what was read past it, for
/// the next request on a keep-alive connection; `None` when the connection ends first.
pub async fn read_http_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + 4 + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = buf[head_end + 4..head_end + 4 + length].to_vec();
    buf.drain(..head_end + 4 + length);
    Some((head, body))
}

impl Mock {
    /// Starts a mock that answers `default` unless a scripted answer is queued.
    pub async fn start(default: Answer) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let port = listener.local_addr().unwrap().port();
        let mock = Mock {
            port,
            seen: Arc::default(),
            script: Arc::default(),
            default: Arc::new(Mutex::new(default)),
        };
        let m = mock.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let m = m.clone();
                tokio::spawn(async move { m.serve(stream).await });
            }
        });
        mock
    }

    /// The base URL a provider configuration points at.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues an answer for the next request, before the default.
    pub fn push(&self, answer: Answer) {
        self.script.lock().unwrap().push_back(answer);
    }

    /// Every request received so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Reads one HTTP request from `stream`, records it and answers from the script.
    async fn serve(&self, mut stream: TcpStream) {
        let Some((head, body)) = read_http_request(&mut stream, &mut Vec::new()).await else {
            return;
        };
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.seen.lock().unwrap().push(Seen {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
        });
        let scripted = self.script.lock().unwrap().pop_front();
        let mut answer = scripted.unwrap_or_else(|| self.default.lock().unwrap().clone());
        let (status, extra, text) = loop {
            match answer {
                Answer::Http(status, extra, text) => break (status, extra, text),
                Answer::Gated(gate, next) => {
                    gate.notified().await;
                    answer = *next;
                }
                Answer::Slow(delay, next) => {
                    tokio::time::sleep(delay).await;
                    answer = *next;
                }
            }
        };
        let mut response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            text.len()
        );
        for (k, v) in extra {
            response.push_str(&format!("{k}: {v}\r\n"));
        }
        response.push_str("\r\n");
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.write_all(text.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

/// Whether a rosey-llm answers `rosey.llm.status` through `client` within `patience`.
pub async fn rosey_llm_answers(client: &async_nats::Client, patience: Duration) -> bool {
    crate::wait_until_async(patience, || async {
        request_json::<_, Value>(
            client,
            subjects::llm::STATUS,
            &json!({}),
            Duration::from_millis(500),
        )
        .await
        .is_ok()
    })
    .await
}
