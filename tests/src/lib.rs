//! The support crate every integration test and bench uses: at the root a private
//! `nats-server` per test, a launcher for Rosey's binaries, and polling helpers that wait for
//! conditions instead of sleeping for luck; one module per kind of test for the rest (a mock
//! CyTube, a SOCKS proxy, a mock LLM provider, the runtime's fixture plugins, rosey-web's
//! client, the sample database, bench measurements). Being a library, it is compiled once and
//! not into every test binary, and a helper nobody calls shows up as dead.
#![deny(missing_docs)]

pub mod bot_support;
pub mod fixture_support;
pub mod llm_support;
pub mod measure;
pub mod mock_cytube;
pub mod runtime_support;
pub mod socks_proxy;
pub mod web_support;

use rosey_plugin_api::db::ChannelStats;
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server -js` on a free loopback port with a temporary JetStream store, killed on drop.
///
/// It can be stopped and started again on the same port and store, to test what survives a
/// server restart.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
    jetstream: bool,
    extra_args: Vec<String>,
    /// The configuration file and log of [`NatsServer::start_with_config`].
    files: Option<tempfile::TempDir>,
}

/// The name of the server binary, overridable for unusual installs.
fn nats_server_binary() -> String {
    std::env::var("ROSEY_NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned())
}

/// Asks the kernel for a port nobody listens on.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener
        .local_addr()
        .expect("ephemeral port has an address")
        .port()
}

impl NatsServer {
    /// Starts a server with JetStream and waits until it accepts connections.
    pub fn start() -> NatsServer {
        Self::start_with(true)
    }

    /// Starts a server without JetStream, for the fallback paths.
    pub fn start_without_jetstream() -> NatsServer {
        Self::start_with(false)
    }

    /// Starts a server with JetStream and extra command-line arguments (`--auth TOKEN`, say).
    pub fn start_with_args(extra_args: &[&str]) -> NatsServer {
        Self::start_on(None, true, extra_args)
    }

    /// Starts a server with JetStream on a given port (for tests that must know the port before
    /// the server exists).
    pub fn start_on_port(port: u16) -> NatsServer {
        Self::start_on(Some(port), true, &[])
    }

    fn start_with(jetstream: bool) -> NatsServer {
        Self::start_on(None, jetstream, &[])
    }

    /// Starts a server with JetStream and this configuration file text (an `authorization`
    /// block, say), logging to a file [`NatsServer::log`] reads (permission violations
    /// included).
    pub fn start_with_config(config: &str) -> NatsServer {
        let files = tempfile::tempdir().expect("create a folder for the server's files");
        let conf = files.path().join("nats-server.conf");
        std::fs::write(&conf, config).expect("write the server's configuration");
        let log = files.path().join("nats-server.log");
        let conf = conf.display().to_string();
        let log = log.display().to_string();
        let mut server = Self::start_on(None, true, &["-c", &conf, "-l", &log]);
        server.files = Some(files);
        server
    }

    /// What the server logged so far (for [`NatsServer::start_with_config`]'s servers).
    pub fn log(&self) -> String {
        self.files
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f.path().join("nats-server.log")).ok())
            .unwrap_or_default()
    }

    fn start_on(port: Option<u16>, jetstream: bool, extra_args: &[&str]) -> NatsServer {
        let mut last_error = String::new();
        // Another test may grab the port between probing and binding; try a few ports.
        for _ in 0..5 {
            let mut server = NatsServer {
                child: None,
                port: port.unwrap_or_else(free_port),
                store: tempfile::tempdir().expect("create a temporary JetStream store"),
                jetstream,
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                files: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start nats-server: {last_error}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(nats_server_binary());
        cmd.arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string());
        if self.jetstream {
            cmd.arg("-js").arg("-sd").arg(self.store.path());
        }
        // The server names the ports it listens on in a file named after its pid: a listener
        // found on the port could be another test's server that grabbed it first.
        let ports_dir = self.store.path().join("ports");
        std::fs::create_dir_all(&ports_dir)
            .map_err(|e| format!("cannot create {ports_dir:?}: {e}"))?;
        cmd.arg("--ports_file_dir").arg(&ports_dir);
        cmd.args(&self.extra_args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot run `{}` ({e}); install it with `apt-get install nats-server` \
                 (.ci/run does this)",
                nats_server_binary()
            )
        })?;
        let ports_file_suffix = format!("_{}.ports", child.id());
        self.child = Some(child);
        let port = self.port;
        let mut exited = None;
        let ready = wait_until(Duration::from_secs(20), || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
            }
            listens_on(&ports_dir, &ports_file_suffix, port)
        });
        if let Some(status) = exited {
            self.child = None;
            return Err(format!(
                "nats-server exited at start (port {port} taken?): {status}"
            ));
        }
        if !ready {
            self.stop();
            return Err(format!("nats-server did not listen on port {port}"));
        }
        Ok(())
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits for it to exit; the store is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("nats-server restart failed: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Connects a client to it.
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }
}

/// Several nats-servers routed into one JetStream cluster on loopback ports, each with a store
/// of its own: what an operator runs across machines, here on one.
pub struct NatsCluster {
    /// The nodes, named `n0`, `n1`, ... (their JetStream server names).
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other; JetStream elects its leader once they meet,
    /// which callers wait for (see [`NatsCluster::wait_for_jetstream`]).
    pub fn start(size: usize) -> NatsCluster {
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let nodes = (0..size)
            .map(|i| {
                let routes = route_ports
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
                    .collect::<Vec<_>>()
                    .join(",");
                let name = format!("n{i}");
                let listen = format!("nats://127.0.0.1:{}", route_ports[i]);
                NatsServer::start_with_args(&[
                    "--name",
                    &name,
                    "--cluster_name",
                    "rosey-test",
                    "--cluster",
                    &listen,
                    "--routes",
                    &routes,
                ])
            })
            .collect();
        NatsCluster { nodes }
    }

    /// Every node's client URL, comma-separated (`nats.server` takes that form).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node JetStream calls `name` (`n0`, ...).
    pub fn node_named(&mut self, name: &str) -> Option<&mut NatsServer> {
        let index: usize = name.strip_prefix('n')?.parse().ok()?;
        self.nodes.get_mut(index)
    }

    /// Waits until the cluster places a stream with a copy on every node (a probe stream,
    /// deleted again): until then JetStream has no leader, or not every node has joined.
    pub async fn wait_for_jetstream(&self, client: &async_nats::Client, patience: Duration) {
        let js = async_nats::jetstream::new(client.clone());
        let replicas = self.nodes.len();
        let ready = wait_until_async(patience, || {
            let js = js.clone();
            async move {
                let probe = async_nats::jetstream::stream::Config {
                    name: "CLUSTER_PROBE".to_owned(),
                    subjects: vec!["cluster.probe".to_owned()],
                    num_replicas: replicas,
                    ..Default::default()
                };
                match js.create_stream(probe).await {
                    Ok(_) => js.delete_stream("CLUSTER_PROBE").await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        assert!(
            ready,
            "the cluster's JetStream was not ready within {patience:?}"
        );
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The folder holding the workspace's binaries: the test executable lives in
/// `target/<profile>/deps/`, the binaries one level up. `ROSEY_BIN_DIR` names another folder
/// (a benchmark run from a debug test binary against release binaries).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROSEY_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe.parent().expect("the test executable is in a folder");
    if deps.ends_with("deps") {
        deps.parent().unwrap_or(deps).to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The path of one of Rosey's binaries; panics with the fix when it has not been built.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run cargo build --workspace first",
        path.display()
    );
    path
}

/// A `Command` for one of Rosey's binaries.
pub fn command(name: &str) -> Command {
    Command::new(binary(name))
}

/// A `Command` for `rosey-db` serving the SQLite file `db` over `nats`, for tests that set its
/// output and environment themselves.
pub fn rosey_db_command(nats: &NatsServer, db: &Path) -> Command {
    let mut cmd = command("rosey-db");
    cmd.arg("--nats").arg(nats.url()).arg("--db").arg(db);
    cmd
}

/// A `rosey-db` on a whole configuration file (every channel's database, its NATS), logging
/// warnings to the test's stderr; wait for it with [`wait_for_rosey_db`].
pub fn rosey_db_on_config(config: &Path) -> ChildGuard {
    let mut cmd = command("rosey-db");
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    ChildGuard::spawn("rosey-db", cmd)
}

/// Starts `rosey-db` on `db` (warnings on stderr) and waits up to `patience` until it answers a
/// channel-stats request through `client`, so a test's first request is not lost to start-up.
pub async fn start_rosey_db(
    nats: &NatsServer,
    client: &async_nats::Client,
    db: &Path,
    patience: Duration,
) -> ChildGuard {
    let mut cmd = rosey_db_command(nats, db);
    cmd.env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let guard = ChildGuard::spawn("rosey-db", cmd);
    wait_for_rosey_db(client, patience).await;
    guard
}

/// Waits up to `patience` until a `rosey-db` answers a channel-stats request through `client`
/// (an error reply counts: serving several channels, it refuses a request naming none);
/// panics otherwise.
pub async fn wait_for_rosey_db(client: &async_nats::Client, patience: Duration) {
    let up = wait_until_async(patience, || async {
        let answer = request_json::<_, ChannelStats>(
            client,
            subjects::db::QUERY_CHANNEL_STATS,
            &serde_json::json!({}),
            Duration::from_millis(500),
        )
        .await;
        matches!(
            answer,
            Ok(_) | Err(rosey_plugin_api::reply::RequestError::Service(..))
        )
    })
    .await;
    assert!(up, "rosey-db did not answer within {patience:?}");
}

/// The last stream sequence rosey-db stored in the database at `path` (its high-water mark),
/// or -1 while the file or the row does not exist yet.
pub fn last_sequence(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .and_then(|c| {
            c.query_row(
                "SELECT last_sequence FROM rosey_stream_state WHERE id = 1",
                [],
                |r| r.get(0),
            )
        })
        .unwrap_or(-1)
}

/// The rows of `sql` in the SQLite file `db` as text, opened read-only (rosey-db may be writing);
/// none while the file or the table does not exist yet.
pub fn sqlite_rows(db: &Path, sql: &str) -> Vec<Vec<String>> {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|conn| {
            let mut stmt = conn.prepare(sql)?;
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |row| {
                    (0..n)
                        .map(|i| {
                            row.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                                rusqlite::types::Value::Text(t) => t,
                                rusqlite::types::Value::Integer(i) => i.to_string(),
                                other => format!("{other:?}"),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .unwrap_or_default()
}

/// A `rosey-db` on `rosey.db` in a temporary folder of its own, answering requests; it can be
/// killed and started again on the same file, to test database outages.
pub struct RoseyDb {
    process: ChildGuard,
    dir: tempfile::TempDir,
}

impl RoseyDb {
    /// Starts it on a fresh database and waits up to `patience` until it answers.
    pub async fn start(
        nats: &NatsServer,
        client: &async_nats::Client,
        patience: Duration,
    ) -> RoseyDb {
        let dir = tempfile::tempdir().expect("create a temporary database folder");
        let process = start_rosey_db(nats, client, &dir.path().join("rosey.db"), patience).await;
        RoseyDb { process, dir }
    }

    /// Starts it on a copy of the original's sample database (`rosey-v0.5-sample.db`), never
    /// the fixture itself, and waits up to `patience` until it answers.
    pub async fn start_on_fixture(
        nats: &NatsServer,
        client: &async_nats::Client,
        patience: Duration,
    ) -> RoseyDb {
        let dir = tempfile::tempdir().expect("create a temporary database folder");
        let fixture = shared_dir().join("fixtures").join("rosey-v0.5-sample.db");
        std::fs::copy(&fixture, dir.path().join("rosey.db"))
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", fixture.display()));
        let process = start_rosey_db(nats, client, &dir.path().join("rosey.db"), patience).await;
        RoseyDb { process, dir }
    }

    /// The SQLite file it serves.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("rosey.db")
    }

    /// Kills the service (SIGKILL); the database file stays.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the service again on the same file and waits up to `patience` until it answers.
    pub async fn restart(
        &mut self,
        nats: &NatsServer,
        client: &async_nats::Client,
        patience: Duration,
    ) {
        self.process.kill();
        self.process = start_rosey_db(nats, client, &self.path(), patience).await;
    }
}

/// A child process killed on drop, so a failing test leaves nothing running.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
}

impl ChildGuard {
    /// Spawns `cmd`, naming it `name` in panics.
    pub fn spawn(name: &str, mut cmd: Command) -> ChildGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            child: Some(child),
            name: name.to_owned(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The child, for reading its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child still owned")
    }

    /// Sends SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within {timeout:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the server whose ports file ends with `suffix` (its pid) says it listens on `port`.
fn listens_on(ports_dir: &Path, suffix: &str, port: u16) -> bool {
    let Ok(entries) = std::fs::read_dir(ports_dir) else {
        return false;
    };
    let wanted = format!(":{port}");
    entries.flatten().any(|entry| {
        entry.file_name().to_string_lossy().ends_with(suffix)
            && std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|ports| ports.get("nats").and_then(|n| n.as_array()).cloned())
                .is_some_and(|urls| {
                    urls.iter()
                        .filter_map(|u| u.as_str())
                        .any(|u| u.ends_with(&wanted))
                })
    })
}

/// The lines a child writes to `out` (its piped stdout or stderr), read on a thread of its own,
/// so a test waits for a line with a timeout (`recv_timeout`) instead of blocking on the pipe.
pub fn lines_of(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The async form of [`wait_until`], for conditions that need NATS.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The shared folder of reference material and fixtures (`../shared` beside the checkout).
pub fn shared_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Ok(dir) = std::env::var("ROSEY_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    manifest
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("shared"))
        .unwrap_or_else(|| PathBuf::from("../shared"))
}

/// The workspace's root folder.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
