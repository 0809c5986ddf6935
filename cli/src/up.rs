//! `rosey up`: runs every Rosey process on this machine and keeps them running.
//!
//! Each process is a separate child (NATS is the only path between them), supervised by its own
//! task: a child that dies is restarted with backoff, each change is shown as one status line,
//! and Ctrl-C or SIGTERM stops everything in reverse start order. The children run in their own
//! process groups, so the terminal's Ctrl-C reaches `rosey up` alone and the order holds.
//!
//! With the console platform the terminal's input goes to the bot, and survives the bot's
//! restarts. Chat travels on plain NATS subjects, so a line sent while a process that answers it
//! is starting would be lost: input is held until every process answers its readiness probe,
//! again after any of them restarts and after NATS itself comes back.

use crate::nats_auth::{self, RunCredentials};
use anyhow::{Context, Result};
use rosey_config::{Config, PlatformKind};
use rosey_plugin_api::access::Role;
use rosey_plugin_api::admin::{PluginState, PluginsList, PluginsListRequest};
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects::runtime;
use std::future::Future;
use std::io::BufRead;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch, Mutex};

/// Restart delays start here and double up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long counts as healthy again, and its backoff resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// How long a child may take to exit after its stop signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a child may take to answer its readiness probe before input is let through anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// How long one readiness probe waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How `rosey up` tells that a started child is ready to serve.
#[derive(Debug, Clone)]
enum Probe {
    /// Something accepts TCP connections on this host and port (nats-server).
    Listening(String, u16),
    /// The NATS service of this name answers `$SRV.PING` (rosey-db, rosey-llm).
    Service(&'static str),
    /// The runtime lists every one of these plugins, none of them still loading.
    Plugins(Vec<String>),
    /// Ready once started: the bot reads its input only after it has joined.
    Started,
}

/// One supervised process: what to run and with which arguments.
#[derive(Debug, Clone)]
struct Spec {
    /// What status lines call it: the program, and for one of several bots its channel.
    name: String,
    program: PathBuf,
    args: Vec<String>,
    takes_input: bool,
    log_file: PathBuf,
    probe: Probe,
    /// What asks it to stop cleanly: SIGTERM for ours; SIGINT for nats-server, which exits
    /// with status 1 on SIGTERM but 0 on SIGINT after the same clean shutdown.
    stop_signal: nix::sys::signal::Signal,
    /// Environment given to it: NATS credentials when `rosey up` runs the server.
    env: Vec<(String, String)>,
}

/// Which children are ready; the bot gets input only while all of them are.
#[derive(Debug, Clone, Default)]
struct Readiness {
    /// One flag per supervised child, in start order.
    ready: Vec<bool>,
    /// How many times nats-server came back after dying: the others must reconnect and be
    /// probed again.
    nats_returns: u64,
}

/// What every supervisor shares.
struct Shared {
    /// The terminal's lines, for the bot.
    input: Mutex<mpsc::Receiver<String>>,
    readiness: watch::Sender<Readiness>,
    /// `rosey up`'s own NATS connection, for the probes; set once NATS is up.
    client: OnceLock<async_nats::Client>,
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
pub(crate) fn state_dir(config_file: Option<&Path>) -> PathBuf {
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

/// What to open for the status page (`web.listen`; a wildcard address is reached on loopback).
fn web_url(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.port() == 0 => {
            "listens on a free port (web.listen port 0): see its log for the address".to_owned()
        }
        Ok(addr) if addr.ip().is_unspecified() => {
            format!("open http://127.0.0.1:{}/", addr.port())
        }
        Ok(addr) => format!("open http://{addr}/"),
        Err(_) => format!("web.listen {listen:?} is not host:port"),
    }
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
    // Registered first: from here on a signal stops the children instead of orphaning them.
    let stop_signal = stop_signals();
    tokio::pin!(stop_signal);
    if let Some(url) = &options.nats {
        config.set_nats_server(url.clone());
    }
    let state = state_dir(options.config_file.as_deref());
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let bins = bin_dir()?;
    let server = config.nats.server.clone();

    // The effective log format (a `--log-format` flag given to `rosey up` included) goes to
    // every child, so their logs in `.rosey/logs/` share one format.
    let log_format = match config.logging.format {
        rosey_config::LogFormat::Text => "text",
        rosey_config::LogFormat::Json => "json",
    };
    let mut common: Vec<String> = vec![
        "--nats".into(),
        server.clone(),
        "--log-format".into(),
        log_format.into(),
    ];
    if let Some(file) = &options.config_file {
        common.push("--config".into());
        common.push(file.display().to_string());
    }

    let mut specs = vec![];
    // Set when `rosey up` starts nats-server itself (then only our children may use it), or
    // finds one a killed run started.
    let mut credentials: Option<RunCredentials> = None;
    let mut starts_server = false;
    if let Some((host, port)) = loopback_endpoint(&server) {
        if listening(&host, port) {
            status(
                "nats-server",
                format!("using the server already on {server}"),
            );
            // A server a killed `rosey up` started outlives it, with that run's users: its
            // operator's file still holds their passwords.
            if let Some(run) = nats_auth::read_run_credentials(&state)? {
                status(
                    "nats-server",
                    format!(
                        "logging in with the users of the run that started it ({})",
                        state.join(nats_auth::OPERATOR_FILE).display()
                    ),
                );
                run.apply(Role::Operator, &mut config);
                credentials = Some(run);
            }
        } else if let Some(nats) = which("nats-server") {
            let store = state.join("nats");
            let address = if host == "localhost" {
                "127.0.0.1".to_owned()
            } else {
                host.clone()
            };
            let run = RunCredentials::generate()?;
            let conf = run.write_server_conf(&state, &config)?;
            let operator = run.write_operator_file(&state)?;
            status(
                "nats-server",
                format!(
                    "users per process, fresh passwords; admin commands log in with {} (mode \
                     0600, removed at stop)",
                    operator.display()
                ),
            );
            run.apply(Role::Operator, &mut config);
            specs.push(Spec {
                name: "nats-server".to_owned(),
                program: nats,
                env: run.server_env(),
                args: vec![
                    "-c".into(),
                    conf.display().to_string(),
                    "-js".into(),
                    "-a".into(),
                    address.clone(),
                    "-p".into(),
                    port.to_string(),
                    "-sd".into(),
                    store.display().to_string(),
                ],
                takes_input: false,
                log_file: logs.join("nats-server.log"),
                probe: Probe::Listening(address, port),
                stop_signal: nix::sys::signal::Signal::SIGINT,
            });
            credentials = Some(run);
            starts_server = true;
        } else {
            status(
                "nats-server",
                format!("nothing listens on {server} and nats-server is not installed (apt-get install nats-server)"),
            );
        }
    } else {
        status("nats-server", format!("using the remote server {server}"));
    }
    let ours = |name: &'static str, role: Role, takes_input: bool, probe: Probe| Spec {
        name: name.to_owned(),
        program: bins.join(name),
        args: common.clone(),
        takes_input,
        log_file: logs.join(format!("{name}.log")),
        probe,
        stop_signal: nix::sys::signal::Signal::SIGTERM,
        env: credentials
            .as_ref()
            .map(|c| c.child_env(role))
            .unwrap_or_default(),
    };
    if config.database.service_enabled {
        specs.push(ours(
            "rosey-db",
            Role::Db,
            false,
            Probe::Service("rosey-db"),
        ));
    } else {
        status(
            "rosey-db",
            "not started (database.service_enabled is false)",
        );
    }
    if config.llm.enabled {
        specs.push(ours(
            "rosey-llm",
            Role::Llm,
            false,
            Probe::Service("rosey-llm"),
        ));
    } else {
        status("rosey-llm", "not started (llm.enabled is false)");
    }
    specs.push(ours(
        "rosey-runtime",
        Role::Runtime,
        false,
        Probe::Plugins(config.runtime_plugins().enabled),
    ));
    specs.push(ours(
        "rosey-web",
        Role::Web,
        false,
        Probe::Service("rosey-web"),
    ));
    status("rosey-web", web_url(&config.web.listen));
    let console = config.platform.kind == PlatformKind::Console;
    let channels = config.platform.channel_names();
    if channels.len() > 1 {
        // One bot per channel, each told its channel; the terminal's lines go to the first.
        // `platform.channels_per_bot` puts several CyTube channels in one process (a console
        // reads the terminal, so console channels keep a process each).
        let groups = bot_groups(&channels, config.platform.channels_per_bot, console);
        for (i, group) in groups.iter().enumerate() {
            let mut bot = ours("rosey-bot", Role::Bot, console && i == 0, Probe::Started);
            let first = &group[0];
            bot.name = match group.as_slice() {
                [only] => format!("rosey-bot@{only}"),
                _ => format!("rosey-bot@{first}+{}", group.len() - 1),
            };
            for channel in group {
                bot.args.extend(["--channel".to_owned(), channel.clone()]);
            }
            bot.log_file = logs.join(format!("rosey-bot-{first}.log"));
            specs.push(bot);
        }
    } else {
        specs.push(ours("rosey-bot", Role::Bot, console, Probe::Started));
    }
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
    let shared = Arc::new(Shared {
        input: Mutex::new(input_rx),
        readiness: watch::channel(Readiness {
            ready: vec![false; specs.len()],
            nats_returns: 0,
        })
        .0,
        client: OnceLock::new(),
    });
    if console {
        forward_stdin(input_tx);
        status(
            "console",
            "type chat lines; /pm text sends a PM to the bot; Ctrl-C stops",
        );
    }

    let mut tasks = vec![];
    let started = tokio::select! {
        result = start_all(specs, &config, &shared, &mut tasks) => Some(result),
        _ = &mut stop_signal => None,
    };
    if let Some(Ok(())) = started {
        (&mut stop_signal).await;
    }
    status("rosey", "stopping");
    // Stop in reverse start order, each after the one before has exited: the bot first (so
    // its last writes reach the database), NATS last.
    for (stop_tx, task) in tasks.into_iter().rev() {
        let _ = stop_tx.send(true);
        let _ = task.await;
    }
    if starts_server {
        let _ = std::fs::remove_file(state.join(nats_auth::OPERATOR_FILE));
    }
    status("rosey", "stopped");
    started.unwrap_or(Ok(()))
}

/// A supervisor's stop switch and its task.
type Supervisor = (watch::Sender<bool>, tokio::task::JoinHandle<()>);

/// Starts the supervisors in order, each once the one before is ready (or has had
/// [`READY_TIMEOUT`] to become so); fails when NATS cannot be reached.
async fn start_all(
    specs: Vec<Spec>,
    config: &Config,
    shared: &Arc<Shared>,
    tasks: &mut Vec<Supervisor>,
) -> Result<()> {
    for (index, spec) in specs.into_iter().enumerate() {
        if spec.name != "nats-server" && shared.client.get().is_none() {
            let client = rosey_config::connect::connect(&config.nats)
                .await
                .context("rosey up cannot reach NATS, so nothing else was started")?;
            if !client.server_info().jetstream {
                // Debian's packaged service, for one, runs without JetStream by default.
                status(
                    "nats-server",
                    format!(
                        "WARNING: the server at {} has no JetStream, so database writes are not \
                         durable (lost while rosey-db is down); enable it (a `jetstream {{}}` \
                         block in its configuration, or `-js`) or point nats.server elsewhere",
                        config.nats.server
                    ),
                );
            }
            let _ = shared.client.set(client);
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(index, spec, stop_rx, shared.clone()));
        tasks.push((stop_tx, task));
        let mut readiness = shared.readiness.subscribe();
        let _ = tokio::time::timeout(
            READY_TIMEOUT + PROBE_TIMEOUT,
            readiness.wait_for(|r| r.ready[index]),
        )
        .await;
    }
    Ok(())
}

/// Resolves on the first Ctrl-C, SIGTERM or SIGHUP (the terminal went away). The handlers are
/// installed when this is called, not when it is first awaited.
fn stop_signals() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let kinds = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ];
        let mut streams: Vec<_> = kinds.into_iter().filter_map(|k| signal(k).ok()).collect();
        async move {
            if streams.is_empty() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            let any = streams.iter_mut().map(|s| Box::pin(s.recv()));
            futures::future::select_all(any).await;
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Reads the terminal's lines for the bot on a plain thread: tokio's stdin reads on its blocking
/// pool, whose pending read would keep `rosey up` from exiting until the next Enter.
fn forward_stdin(tx: mpsc::Sender<String>) {
    let spawned = std::thread::Builder::new()
        .name("rosey-up-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { return };
                if tx.blocking_send(line).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        status("console", format!("cannot read the terminal: {e}"));
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
        // Our services stop themselves if `rosey up` is killed outright (nats-server cannot).
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(
            rosey_config::supervisor::SUPERVISOR_ENV,
            std::process::id().to_string(),
        )
        .kill_on_drop(true);
    // The bot's allocator gives a burst's memory back at once (a huge user list; see
    // BENCHMARKS.md), as deploy/rosey-bot.service asks too; an operator's own setting wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        cmd.env("MIMALLOC_PURGE_DELAY", "0");
    }
    // Its own process group: the terminal's Ctrl-C must reach `rosey up` alone, which then
    // stops the children in order.
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.spawn()
        .with_context(|| format!("cannot start {}", spec.program.display()))
}

/// Whether `probe` holds now.
async fn probe_once(probe: &Probe, client: Option<&async_nats::Client>) -> bool {
    match (probe, client) {
        (Probe::Started, _) => true,
        (Probe::Listening(host, port), _) => matches!(
            tokio::time::timeout(
                PROBE_TIMEOUT,
                tokio::net::TcpStream::connect((host.as_str(), *port))
            )
            .await,
            Ok(Ok(_))
        ),
        (Probe::Service(name), Some(client)) => matches!(
            tokio::time::timeout(
                PROBE_TIMEOUT,
                // The NATS service protocol's subject, not one of Rosey's.
                client.request(format!("$SRV.PING.{name}"), "".into())
            )
            .await,
            Ok(Ok(_))
        ),
        (Probe::Plugins(names), Some(client)) => {
            let list: Result<PluginsList, _> = request_json(
                client,
                runtime::PLUGINS_LIST,
                &PluginsListRequest {},
                PROBE_TIMEOUT,
            )
            .await;
            list.is_ok_and(|list| {
                names.iter().all(|name| {
                    list.plugins
                        .iter()
                        .any(|p| &p.name == name && p.state != PluginState::Loading)
                })
            })
        }
        (Probe::Service(_) | Probe::Plugins(_), None) => false,
    }
}

/// Probes until `probe` holds (true) or [`READY_TIMEOUT`] passes (false).
async fn wait_ready(probe: Probe, shared: Arc<Shared>) -> bool {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if probe_once(&probe, shared.client.get()).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// The next line for the bot: one a failed write kept back, else the next one typed.
async fn next_line(
    pending: &mut Option<String>,
    rx: &mut Option<tokio::sync::MutexGuard<'_, mpsc::Receiver<String>>>,
) -> Option<String> {
    if let Some(line) = pending.take() {
        return Some(line);
    }
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The outcome of the probe in progress; never resolves when none is.
async fn next_probe(probing: &mut Option<Pin<Box<dyn Future<Output = bool> + Send>>>) -> bool {
    match probing {
        Some(probe) => probe.await,
        None => std::future::pending().await,
    }
}

/// Writes one line to the bot; false when the bot is gone.
async fn write_line(stdin: &mut ChildStdin, line: &str) -> bool {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    stdin.write_all(&bytes).await.is_ok()
}

/// Keeps one child running until stop is signalled, restarting it with backoff.
async fn supervise(index: usize, spec: Spec, mut stop: watch::Receiver<bool>, shared: Arc<Shared>) {
    let is_nats = spec.name == "nats-server";
    let set_ready = |ready: bool| shared.readiness.send_modify(|r| r.ready[index] = ready);
    let mut backoff = MIN_BACKOFF;
    let mut starts = 0_u32;
    // A line whose write failed because the bot was going away: the next bot gets it.
    let mut pending: Option<String> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let mut child = match spawn(&spec) {
            Ok(child) => child,
            Err(err) => {
                status(&spec.name, format!("{err:#}"));
                if wait_or_stop(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        starts += 1;
        let pid = child.id().unwrap_or(0);
        status(&spec.name, format!("started (pid {pid})"));
        let mut stdin = child.stdin.take();
        let mut input = match stdin {
            Some(_) => Some(shared.input.lock().await),
            None => None,
        };
        let mut updates = shared.readiness.subscribe();
        let mut nats_returns = updates.borrow_and_update().nats_returns;
        let mut probing: Option<Pin<Box<dyn Future<Output = bool> + Send>>> =
            Some(Box::pin(wait_ready(spec.probe.clone(), shared.clone())));
        let mut announced = false;
        let mut input_open = true;
        let exit = loop {
            let all_ready = updates.borrow().ready.iter().all(|r| *r);
            tokio::select! {
                status = child.wait() => break Some(status),
                _ = stop.changed() => break None,
                ready = next_probe(&mut probing), if probing.is_some() => {
                    probing = None;
                    if !announced {
                        announced = true;
                        if ready {
                            status(&spec.name, format!("running (pid {pid})"));
                        } else {
                            status(
                                &spec.name,
                                format!(
                                    "running (pid {pid}) but not ready after {}s; \
                                     letting input through (log: {})",
                                    READY_TIMEOUT.as_secs(),
                                    spec.log_file.display()
                                ),
                            );
                        }
                    }
                    shared.readiness.send_modify(|r| {
                        r.ready[index] = true;
                        if is_nats && starts > 1 {
                            // The others reconnect by themselves; hold input until they have.
                            for (other, flag) in r.ready.iter_mut().enumerate() {
                                if other != index {
                                    *flag = false;
                                }
                            }
                            r.nats_returns += 1;
                        }
                    });
                }
                changed = updates.changed() => {
                    if changed.is_ok() {
                        let returns = updates.borrow_and_update().nats_returns;
                        if returns != nats_returns && !is_nats {
                            nats_returns = returns;
                            let probe = wait_ready(spec.probe.clone(), shared.clone());
                            probing = Some(Box::pin(probe));
                        }
                    }
                }
                line = next_line(&mut pending, &mut input),
                    if all_ready && input_open && stdin.is_some() =>
                match (line, stdin.as_mut()) {
                    (Some(line), Some(writer)) => {
                        if !write_line(writer, &line).await {
                            // The bot is going away; its exit is picked up next turn.
                            pending = Some(line);
                            stdin = None;
                        }
                    }
                    // End of input: the bot keeps running until stopped.
                    _ => input_open = false,
                },
            }
        };
        set_ready(false);
        drop(input);
        // End of input first: the bot's blocking stdin read would otherwise hold up its exit.
        drop(stdin);
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
                    &spec.name,
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

/// The child's stop signal, then SIGKILL after [`STOP_GRACE`].
async fn terminate(spec: &Spec, child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, spec.stop_signal);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(s)) => status(&spec.name, format!("stopped ({s})")),
        _ => {
            let _ = child.kill().await;
            status(&spec.name, "killed (did not stop in time)");
        }
    }
}

/// The channels of each `rosey-bot` process `rosey up` starts: `per_bot` at a time, in the
/// configuration's order (a process per channel for a console, which reads the terminal).
fn bot_groups(channels: &[String], per_bot: usize, console: bool) -> Vec<Vec<String>> {
    let per_bot = if console { 1 } else { per_bot.max(1) };
    channels.chunks(per_bot).map(<[String]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn channels_are_grouped_per_bot_process() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let one_each: Vec<Vec<String>> = names.iter().map(|n| vec![n.clone()]).collect();
        assert_eq!(bot_groups(&names, 1, false), one_each);
        assert_eq!(
            bot_groups(&names, 2, false),
            [vec!["a", "b"], vec!["c", "d"], vec!["e"]]
        );
        assert_eq!(bot_groups(&names, 100, false), vec![names.clone()]);
        // A console reads the terminal: a process per channel whatever the setting.
        assert_eq!(bot_groups(&names, 3, true), one_each);
    }

    use super::*;

    #[test]
    fn web_urls_say_what_to_open() {
        assert_eq!(web_url("127.0.0.1:8477"), "open http://127.0.0.1:8477/");
        assert_eq!(web_url("0.0.0.0:9000"), "open http://127.0.0.1:9000/");
        assert!(web_url("127.0.0.1:0").contains("free port"));
    }

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
