//! `rosey up`: runs every Rosey process on this machine and keeps them running.
//!
//! Each process is a separate child (NATS is the only path between them), supervised by its own
//! task: a child that dies is restarted with backoff, each change is shown as one status line,
//! and Ctrl-C or SIGTERM stops everything in reverse start order. With the console platform the
//! terminal's input goes to the bot, and survives the bot's restarts.

use anyhow::{Context, Result};
use rosey_config::{Config, PlatformKind};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch, Mutex};

/// Restart delays start here and double up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long counts as healthy again, and its backoff resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One supervised process: what to run and with which arguments.
#[derive(Debug, Clone)]
struct Spec {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    takes_input: bool,
    log_file: PathBuf,
}

/// Options of `rosey up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The configuration file, if any.
    pub config_file: Option<PathBuf>,
    /// `--nats` override.
    pub nats: Option<String>,
}

/// Where `rosey up` keeps NATS data and process logs: beside the configuration file, or in the
/// current folder for the embedded defaults.
fn state_dir(config_file: Option<&Path>) -> PathBuf {
    let base = config_file
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    base.join(".rosey")
}

/// The folder holding our binaries: the one `rosey` itself runs from.
fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the rosey executable")?;
    Ok(exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}

/// Host and port of a `nats://host:port` URL, when the host is this machine.
fn loopback_endpoint(url: &str) -> Option<(String, u16)> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next()?.rsplit('@').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().ok()?),
        None => (authority.to_owned(), 4222),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then_some((host, port))
}

fn listening(host: &str, port: u16) -> bool {
    (host, port)
        .to_socket_addrs()
        .map(|addrs| {
            addrs
                .into_iter()
                .any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
        })
        .unwrap_or(false)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Prints one status line, the only output of `rosey up` besides the bot's chat.
fn status(name: &str, text: impl std::fmt::Display) {
    eprintln!("rosey: {name:<14} {text}");
}

/// Runs everything until Ctrl-C or SIGTERM.
pub async fn run(options: UpOptions, mut config: Config) -> Result<()> {
    if let Some(url) = &options.nats {
        config.set_nats_server(url.clone());
    }
    let state = state_dir(options.config_file.as_deref());
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let bins = bin_dir()?;
    let server = config.nats.server.clone();

    let mut common: Vec<String> = vec!["--nats".into(), server.clone()];
    if let Some(file) = &options.config_file {
        common.push("--config".into());
        common.push(file.display().to_string());
    }

    let mut specs = vec![];
    if let Some((host, port)) = loopback_endpoint(&server) {
        if listening(&host, port) {
            status(
                "nats-server",
                format!("using the server already on {server}"),
            );
        } else if let Some(nats) = which("nats-server") {
            let store = state.join("nats");
            specs.push(Spec {
                name: "nats-server",
                program: nats,
                args: vec![
                    "-js".into(),
                    "-a".into(),
                    if host == "localhost" {
                        "127.0.0.1".into()
                    } else {
                        host.clone()
                    },
                    "-p".into(),
                    port.to_string(),
                    "-sd".into(),
                    store.display().to_string(),
                ],
                takes_input: false,
                log_file: logs.join("nats-server.log"),
            });
        } else {
            status(
                "nats-server",
                format!("nothing listens on {server} and nats-server is not installed (apt-get install nats-server)"),
            );
        }
    } else {
        status("nats-server", format!("using the remote server {server}"));
    }
    let ours = |name: &'static str, extra: &[&str], takes_input: bool| Spec {
        name,
        program: bins.join(name),
        args: common
            .iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect(),
        takes_input,
        log_file: logs.join(format!("{name}.log")),
    };
    if config.database.service_enabled {
        specs.push(ours("rosey-db", &[], false));
    } else {
        status(
            "rosey-db",
            "not started (database.service_enabled is false)",
        );
    }
    specs.push(ours("rosey-runtime", &[], false));
    let console = config.platform.kind == PlatformKind::Console;
    specs.push(ours("rosey-bot", &[], console));
    for spec in &specs {
        if !spec.program.exists() {
            anyhow::bail!(
                "{} is missing; build everything first with cargo build --workspace",
                spec.program.display()
            );
        }
    }
    status("logs", logs.display());

    let (input_tx, input_rx) = mpsc::channel::<String>(256);
    let input_rx = Arc::new(Mutex::new(input_rx));
    if console {
        tokio::spawn(forward_stdin(input_tx));
        status(
            "console",
            "type chat lines; /pm text sends a PM to the bot; Ctrl-C stops",
        );
    }

    let mut tasks = vec![];
    for spec in specs {
        let is_nats = spec.name == "nats-server";
        let endpoint = loopback_endpoint(&server);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(spec, stop_rx, input_rx.clone()));
        tasks.push((stop_tx, task));
        if is_nats {
            // The others retry their first connection briefly; give the server a head start.
            if let Some((host, port)) = endpoint {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !listening(&host, port) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    rosey_config::signal::shutdown_signal().await;
    status("rosey", "stopping");
    // Stop in reverse start order, each after the one before has exited: the bot first (so
    // its last writes reach the database), NATS last.
    for (stop_tx, task) in tasks.into_iter().rev() {
        let _ = stop_tx.send(true);
        let _ = task.await;
    }
    status("rosey", "stopped");
    Ok(())
}

async fn forward_stdin(tx: mpsc::Sender<String>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if tx.send(line).await.is_err() {
            return;
        }
    }
}

fn spawn(spec: &Spec) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)
        .with_context(|| format!("cannot open {}", spec.log_file.display()))?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(if spec.takes_input {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if spec.takes_input {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    cmd.spawn()
        .with_context(|| format!("cannot start {}", spec.program.display()))
}

/// Keeps one child running until stop is signalled, restarting it with backoff.
async fn supervise(
    spec: Spec,
    mut stop: watch::Receiver<bool>,
    input: Arc<Mutex<mpsc::Receiver<String>>>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let mut child = match spawn(&spec) {
            Ok(child) => child,
            Err(err) => {
                status(spec.name, format!("{err:#}"));
                if wait_or_stop(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        status(
            spec.name,
            format!("running (pid {})", child.id().unwrap_or(0)),
        );
        let stdin = child.stdin.take();
        let exit = if let Some(mut stdin) = stdin {
            let input = input.clone();
            let mut rx = input.lock().await;
            loop {
                tokio::select! {
                    status = child.wait() => break Some(status),
                    _ = stop.changed() => break None,
                    line = rx.recv() => match line {
                        Some(line) => {
                            let mut bytes = line.into_bytes();
                            bytes.push(b'\n');
                            if stdin.write_all(&bytes).await.is_err() {
                                // The child is going away; its exit is picked up next turn.
                            }
                        }
                        // End of input: the bot keeps running until stopped.
                        None => break tokio::select! {
                            status = child.wait() => Some(status),
                            _ = stop.changed() => None,
                        },
                    },
                }
            }
        } else {
            tokio::select! {
                status = child.wait() => Some(status),
                _ = stop.changed() => None,
            }
        };
        match exit {
            None => {
                terminate(&spec, &mut child).await;
                return;
            }
            Some(result) => {
                let how = match result {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                if started.elapsed() > HEALTHY_AFTER {
                    backoff = MIN_BACKOFF;
                }
                status(
                    spec.name,
                    format!(
                        "exited ({how}); restarting in {:.1}s (log: {})",
                        backoff.as_secs_f64(),
                        spec.log_file.display()
                    ),
                );
                if wait_or_stop(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sleeps for `delay`; true when stop was signalled meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn terminate(spec: &Spec, child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(s)) => status(spec.name, format!("stopped ({s})")),
        _ => {
            let _ = child.kill().await;
            status(spec.name, "killed (did not stop in time)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        assert_eq!(
            loopback_endpoint("nats://localhost:4222"),
            Some(("localhost".into(), 4222))
        );
        assert_eq!(
            loopback_endpoint("nats://user:pw@127.0.0.1:5000"),
            Some(("127.0.0.1".into(), 5000))
        );
        assert_eq!(
            loopback_endpoint("nats://[::1]:4222"),
            Some(("::1".into(), 4222))
        );
        assert_eq!(
            loopback_endpoint("localhost"),
            Some(("localhost".into(), 4222))
        );
        assert_eq!(loopback_endpoint("nats://nats.example.org:4222"), None);
    }
}
