//! Shared by the `web_*` tests: starting `rosey-web` on a free port, a small HTTP/1.1 client
//! over a plain socket (requests, and the live feed read line by line), and a strict parser of
//! the Prometheus text format.

use crate::{command, lines_of, ChildGuard, NatsServer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// How long the web tests wait for any one condition.
pub const WAIT: Duration = Duration::from_secs(30);
/// The fixture database's API token (created by the original).
pub const FIXTURE_TOKEN: &str = "MUYoaOQ8Nue6IkXeqgWC2mEqbMdQIvjfkaoTefZf9Vg";

/// A running rosey-web and the address it printed.
pub struct Web {
    /// The process.
    pub child: ChildGuard,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// Starts rosey-web on `nats` with `web` as its `web` section (`listen` defaults to
/// `127.0.0.1:0`) and waits for its address line.
pub fn start_web(nats: &NatsServer, web: serde_json::Value) -> Web {
    try_start_web(nats, web).unwrap_or_else(|e| panic!("rosey-web did not start: {e}"))
}

/// As [`start_web`], or the process's stderr when it exits instead.
pub fn try_start_web(nats: &NatsServer, mut web: serde_json::Value) -> Result<Web, String> {
    if web.get("listen").is_none() {
        web["listen"] = "127.0.0.1:0".into();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rosey.json");
    std::fs::write(
        &config,
        serde_json::json!({"nats": {"server": nats.url()}, "web": web}).to_string(),
    )
    .unwrap();
    try_start_web_on(dir, &config, |cmd| cmd)
}

/// Starts rosey-web on the configuration file `config` (its `web.listen` should bind port 0),
/// the command first passed through `wrap` (to log it in to NATS, say), its log in `dir`; waits
/// for its address line, or returns the process's stderr when it exits instead.
pub fn try_start_web_on(
    dir: tempfile::TempDir,
    config: &std::path::Path,
    wrap: impl FnOnce(&mut std::process::Command) -> &mut std::process::Command,
) -> Result<Web, String> {
    let log = std::fs::File::create(dir.path().join("web.log")).unwrap();
    let mut cmd = command("rosey-web");
    cmd.arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(log);
    wrap(&mut cmd);
    let mut child = ChildGuard::spawn("rosey-web", cmd);
    let out = child.child_mut().stdout.take().unwrap();
    let rx = lines_of(out);
    let log_text = |dir: &tempfile::TempDir| {
        std::fs::read_to_string(dir.path().join("web.log")).unwrap_or_default()
    };
    match rx.recv_timeout(WAIT) {
        Ok(line) => {
            let url = line
                .strip_prefix("rosey-web listening on http://")
                .ok_or_else(|| format!("unexpected first line {line:?}"))?;
            let addr: SocketAddr = url
                .trim_end_matches('/')
                .parse()
                .map_err(|e| format!("{url}: {e}"))?;
            // A wildcard listen address is reached on loopback.
            let addr = if addr.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            } else {
                addr
            };
            Ok(Web { child, addr, dir })
        }
        Err(_) => {
            let status = child.wait_exit(WAIT);
            Err(format!("exit {status:?}: {}", log_text(&dir)))
        }
    }
}

impl Web {
    /// `http://host:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("web.log")).unwrap_or_default()
    }

    /// The folder holding its configuration.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// Body text.
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// One request; `headers` are extra header lines.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    if let Some(b) = body {
        // A server may answer (413) and close before reading a huge body.
        let _ = stream.write_all(b).await;
    }
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await;
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..end])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// GET.
pub async fn get(web: &Web, path: &str) -> Answer {
    http(web.addr, "GET", path, &[], None).await
}

/// HTTP Basic for `admin:password`.
pub fn basic(password: &str) -> String {
    use std::fmt::Write as _;
    // base64 by hand: the tests have no base64 crate and need only this.
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("admin:{password}");
    let bytes = input.as_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = out.write_char(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The live feed: `event` and `data` pairs as they come.
pub struct Feed {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>>,
}

impl Feed {
    /// Opens `/events` (for `channel`).
    pub async fn open(web: &Web, query: &str) -> Feed {
        let mut stream = tokio::net::TcpStream::connect(web.addr).await.unwrap();
        let req = format!(
            "GET /events{query} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            web.addr
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut lines = tokio::io::BufReader::new(stream).lines();
        // Skip the head.
        while let Ok(Some(line)) = lines.next_line().await {
            if line.is_empty() {
                break;
            }
        }
        Feed { lines }
    }

    /// The next event whose name is `event` and whose data contains `needle`, within [`WAIT`].
    pub async fn wait_for(&mut self, event: &str, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut current = String::new();
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {event} event with {needle:?} in time"))
                .unwrap()
                .expect("feed open");
            if let Some(name) = line.strip_prefix("event: ") {
                current = name.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                if current == event && data.contains(needle) {
                    return data.to_owned();
                }
            }
        }
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parses the Prometheus text exposition format strictly: every sample belongs to a family
/// declared by `# TYPE` before it, names and label names follow the format's rules, label
/// values are properly quoted and escaped, values are numbers; anything else is an error.
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("bad TYPE"))?;
            if !is_name(name, true)
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
            {
                return Err(at("bad TYPE"));
            }
            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(at("family declared twice"));
            }
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with('#') {
            continue;
        }
        let (name_part, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(at("no value")),
        };
        if !is_name(name_part, true) {
            return Err(at("bad metric name"));
        }
        if !types.contains_key(name_part) {
            return Err(at("sample before its # TYPE"));
        }
        let mut labels = BTreeMap::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                // label name
                let mut key = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c == '=' || c == '}' {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                match chars.next() {
                    Some((i, '}')) if key.is_empty() => {
                        end = i;
                        break;
                    }
                    Some((_, '=')) => {}
                    _ => return Err(at("bad label")),
                }
                if !is_name(&key, false) {
                    return Err(at("bad label name"));
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err(at("bad escape")),
                        },
                        Some((_, '"')) => break,
                        Some((_, '\n')) | None => return Err(at("unterminated label value")),
                        Some((_, c)) => value.push(c),
                    }
                }
                labels.insert(key, value);
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        end = i;
                        break;
                    }
                    _ => return Err(at("bad label separator")),
                }
            }
            rest = &body[end + 1..];
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value"))?;
        let value = value.split(' ').next().unwrap_or("");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at("value is not a number"))?,
        };
        samples.push(Sample {
            name: name_part.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_parser_is_strict() {
        let ok = "# TYPE a gauge\na{x=\"1\\\"2\",y=\"\"} 3\n# TYPE b counter\nb 4.5\n";
        let s = parse_prometheus(ok).unwrap();
        assert_eq!(s[0].labels["x"], "1\"2");
        assert_eq!(s[1].value, 4.5);
        for bad in [
            "a 1\n",
            "# TYPE a gauge\na{x=1} 1\n",
            "# TYPE a gauge\na{x=\"1} 1\n",
            "# TYPE a gauge\na one\n",
            "# TYPE 1a gauge\n",
            "# TYPE a gauge\na{x=\"\\q\"} 1\n",
        ] {
            assert!(parse_prometheus(bad).is_err(), "{bad:?} accepted");
        }
    }
}
