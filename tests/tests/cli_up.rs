//! `rosey up` end to end: it starts its own nats-server, rosey-db, rosey-runtime, rosey-web and
//! a console rosey-bot; we type on its stdin and read the bot's answers on its stdout, kill each child in
//! turn and see it come back and serve again, then stop everything with SIGTERM.

use rosey_tests::{command, free_port, lines_of, wait_until, workspace_dir};
use serde_json::json;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// The children `rosey up` supervises, in start order.
const CHILDREN: [&str; 5] = [
    "nats-server",
    "rosey-db",
    "rosey-runtime",
    "rosey-web",
    "rosey-bot",
];

/// The pid in a status line `rosey: <name> started|running (pid N)`.
fn status_pid(line: &str, name: &str, state: &str) -> Option<u32> {
    let mut words = line.strip_prefix("rosey:")?.split_whitespace();
    if words.next()? != name || words.next()? != state || words.next()? != "(pid" {
        return None;
    }
    words.next()?.strip_suffix(')')?.parse().ok()
}

/// Every pid a status line names, for the clean-up guard.
fn any_pid(line: &str) -> Option<u32> {
    let (_, rest) = line.split_once("(pid ")?;
    rest.split(')').next()?.parse().ok()
}

fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Whether a process is gone (reaped, or a zombie nobody will run again).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A running `rosey up`: its stdin, the bot's chat on its stdout (read by a thread into a
/// channel) and its status lines (read by a thread into a log). Dropping it SIGKILLs `rosey up` and every child it named.
struct RoseyUp {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    /// Every status line so far, for failure messages.
    status_log: Arc<Mutex<Vec<String>>>,
    /// Every pid the status lines named.
    pids: Arc<Mutex<HashSet<u32>>>,
    /// Its state folder (`.rosey` beside the configuration), for the logs in failure messages.
    state: std::path::PathBuf,
}

impl RoseyUp {
    fn start(config: &Path) -> RoseyUp {
        let mut cmd = command("rosey");
        cmd.arg("up")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, as a terminal's foreground job: Ctrl-C goes to the whole group.
            .process_group(0);
        let mut child = cmd.spawn().expect("start rosey up");
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let stdout = lines_of(out);
        let status_log = Arc::new(Mutex::new(vec![]));
        let pids = Arc::new(Mutex::new(HashSet::new()));
        {
            let (status_log, pids) = (status_log.clone(), pids.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { return };
                    if let Some(pid) = any_pid(&line) {
                        pids.lock().unwrap().insert(pid);
                    }
                    status_log.lock().unwrap().push(line);
                }
            });
        }
        RoseyUp {
            child: Some(child),
            stdin,
            stdout,
            status_log,
            pids,
            state: config
                .parent()
                .map(|d| d.join(".rosey"))
                .unwrap_or_default(),
        }
    }

    fn log(&self) -> String {
        let nats = std::fs::read_to_string(self.state.join("logs").join("nats-server.log"))
            .unwrap_or_default();
        format!(
            "{}\nnats-server's log:\n{nats}",
            self.status_log.lock().unwrap().join("\n")
        )
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the bot to say exactly `expected`, skipping other chat.
    fn expect_chat(&self, expected: &str) {
        let deadline = Instant::now() + WAIT;
        let mut seen = vec![];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(line) if line == expected => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "no {expected:?} from the bot within {WAIT:?}; chat: {seen:?}\nstatus:\n{}",
            self.log()
        );
    }

    /// Types `line` and waits for the bot's `answer`.
    fn ask(&mut self, line: &str, answer: &str) {
        self.type_line(line);
        self.expect_chat(answer);
    }

    /// Waits for `name`'s latest status to be `running (pid N)` with a pid other than `old`;
    /// returns N. The status log is searched whole: the children's lines may come in any order.
    fn wait_running(&self, name: &str, old: Option<u32>) -> u32 {
        let latest = || {
            let log = self.status_log.lock().unwrap();
            log.iter()
                .rev()
                .find_map(|l| status_pid(l, name, "running"))
                .filter(|pid| Some(*pid) != old)
        };
        if wait_until(WAIT, || latest().is_some()) {
            if let Some(pid) = latest() {
                return pid;
            }
        }
        panic!(
            "{name} did not report running (other than {old:?}) within {WAIT:?}; status:\n{}",
            self.log()
        );
    }

    /// Waits for a status line for which `matches` holds.
    fn wait_status(&self, what: &str, matches: impl Fn(&str) -> bool) {
        let seen = wait_until(WAIT, || {
            self.status_log.lock().unwrap().iter().any(|l| matches(l))
        });
        assert!(
            seen,
            "no status line {what} within {WAIT:?}; status:\n{}",
            self.log()
        );
    }
}

impl Drop for RoseyUp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in self.pids.lock().map(|p| p.clone()).unwrap_or_default() {
            signal(pid, "KILL");
        }
    }
}

/// A temporary folder holding a console configuration whose NATS is on a free loopback port
/// nobody listens on, so `rosey up` starts its own server.
fn console_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("rosey.json");
    let port = free_port();
    std::fs::write(
        &config,
        json!({
            "platform": {
                "type": "console",
                "console_user": "tester",
                "credentials": {"username": "rosey"},
                "flood": {"commands_per_minute": 1000, "block_seconds": 1}
            },
            "nats": {"server": format!("nats://127.0.0.1:{port}")},
            "database": {"path": dir.join("rosey.db")},
            "plugins": {"directory": workspace_dir().join("plugins")},
            "web": {"listen": "127.0.0.1:0"}
        })
        .to_string(),
    )
    .unwrap();
    config
}

#[test]
fn up_answers_on_the_console_survives_each_child_being_killed_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = console_config(dir.path());
    let mut up = RoseyUp::start(&config);
    // Typed at once, as a user would: `rosey up` holds it until every process can answer.
    up.type_line("!quote add the sky is blue -- alice");

    let mut pids: Vec<u32> = CHILDREN
        .iter()
        .map(|name| up.wait_running(name, None))
        .collect();
    assert!(
        dir.path().join(".rosey").join("nats").is_dir(),
        "the JetStream store is beside the configuration"
    );
    up.expect_chat("<rosey> Added quote #1.");
    up.ask("!quote 1", "<rosey> #1: the sky is blue — alice");

    let proofs = [
        // A new bot still gets the terminal's input.
        ("rosey-bot", "!quote count", "<rosey> 1 quote."),
        // A new runtime reads the quotes back from the database.
        (
            "rosey-runtime",
            "!quote 1",
            "<rosey> #1: the sky is blue — alice",
        ),
        // A new database service stores and serves.
        (
            "rosey-db",
            "!quote add water is wet -- bob",
            "<rosey> Added quote #2.",
        ),
        // A new nats-server, with the same store; everyone reconnects.
        (
            "nats-server",
            "!quote add fire is hot -- carol",
            "<rosey> Added quote #3.",
        ),
    ];
    for (name, line, answer) in proofs {
        let index = CHILDREN.iter().position(|c| *c == name).unwrap();
        let old = pids[index];
        signal(old, "KILL");
        pids[index] = up.wait_running(name, Some(old));
        assert!(
            wait_until(WAIT, || gone(old)),
            "{name} (pid {old}) is still there"
        );
        up.ask(line, answer);
    }
    up.ask("!quote count", "<rosey> 3 quotes.");
    up.ask("!quote 2", "<rosey> #2: water is wet — bob");

    stop_and_check(up, "TERM", false, &pids);
}

/// Starts `rosey up` on a console configuration in `dir`, waits for every child to run and
/// the bot to answer; returns it with the children's pids in start order.
fn start_and_answer(dir: &Path) -> (RoseyUp, Vec<u32>) {
    let config = console_config(dir);
    let mut up = RoseyUp::start(&config);
    let pids = CHILDREN
        .iter()
        .map(|name| up.wait_running(name, None))
        .collect();
    up.ask(
        "!quote count",
        "<rosey> No quotes yet; add one with !quote add <text>.",
    );
    (up, pids)
}

#[test]
fn ctrl_c_reaches_rosey_up_alone_and_it_stops_the_children_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (up, pids) = start_and_answer(dir.path());
    // The children are not interrupted with it: each is stopped by `rosey up`, none dies first.
    stop_and_check(up, "INT", true, &pids);
}

#[test]
fn killing_rosey_up_outright_stops_its_services_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, pids) = start_and_answer(dir.path());
    // SIGKILL: `rosey up` gets no chance to stop anyone.
    let mut child = up.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // Each service is told by the kernel (parent-death signal) and stops as on SIGTERM.
    for (name, pid) in CHILDREN.iter().zip(&pids).skip(1) {
        assert!(
            wait_until(WAIT, || gone(*pid)),
            "{name} (pid {pid}) outlived a killed rosey up"
        );
    }
    let logs = dir.path().join(".rosey").join("logs");
    let read = |name: &str| std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap();
    assert!(
        read("rosey-db").contains("stopped cleanly"),
        "rosey-db did not finish its batch and stop:\n{}",
        read("rosey-db")
    );
    assert!(
        read("rosey-runtime").contains("unloading plugins"),
        "rosey-runtime did not unload its plugins:\n{}",
        read("rosey-runtime")
    );
    // nats-server is not ours and cannot follow; the guard stops it.
}

/// Signals `rosey up` (its whole process group when `group`, as the terminal's Ctrl-C does) and
/// checks that it exits with status 0 after stopping every child, and that none is left.
fn stop_and_check(mut up: RoseyUp, signal_name: &str, group: bool, pids: &[u32]) {
    let mut child = up.child.take().unwrap();
    let target = if group {
        format!("-{}", child.id())
    } else {
        child.id().to_string()
    };
    let _ = Command::new("kill")
        .arg(format!("-{signal_name}"))
        .arg("--")
        .arg(target)
        .status();
    let exited = wait_until(WAIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(exited, "rosey up did not stop; status:\n{}", up.log());
    assert!(
        status.success(),
        "rosey up exited with {status}:\n{}",
        up.log()
    );
    up.wait_status("rosey stopped", |l| {
        l.starts_with("rosey:") && l.ends_with("stopped") && l.contains(" rosey ")
    });
    for (name, pid) in CHILDREN.iter().zip(pids) {
        assert!(
            wait_until(WAIT, || gone(*pid)),
            "{name} (pid {pid}) outlived rosey up"
        );
    }
    let log = up.log();
    let stopping = log
        .lines()
        .position(|l| l.ends_with("stopping"))
        .expect("a stopping line");
    let after: Vec<&str> = log.lines().skip(stopping).collect();
    // Each one stopped by its clean-stop signal exits with status 0 (nats-server too: SIGINT).
    for name in CHILDREN {
        assert!(
            after
                .iter()
                .any(|l| l.contains(name) && l.contains("stopped (exit status: 0)")),
            "{name} was not stopped cleanly:\n{log}"
        );
    }
    assert!(
        !after.iter().any(|l| l.contains("exited (")),
        "a child died on its own while stopping:\n{log}"
    );
    // Reverse start order: the bot first, NATS last.
    let order: Vec<usize> = CHILDREN
        .iter()
        .map(|name| {
            after
                .iter()
                .position(|l| l.contains(name) && l.contains("stopped ("))
                .unwrap_or(0)
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] > w[1]),
        "not stopped in reverse start order:\n{log}"
    );
}

/// Runs `rosey up` to completion with stdin closed; its exit status and stderr.
fn run_to_end(mut cmd: Command) -> (std::process::ExitStatus, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(child) => break child,
            // A binary copied a moment ago: another test thread that forked meanwhile holds its
            // write handle until it execs, and the kernel refuses to run it until then.
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("start rosey up: {e}"),
        }
    };
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let exited = wait_until(WAIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let text = reader.join().unwrap();
    assert!(exited, "rosey up did not give up:\n{text}");
    (status, text)
}

#[test]
fn up_without_the_other_binaries_says_to_build_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = console_config(dir.path());
    let lone = dir.path().join("bin");
    std::fs::create_dir(&lone).unwrap();
    std::fs::copy(rosey_tests::binary("rosey"), lone.join("rosey")).unwrap();
    let mut cmd = Command::new(lone.join("rosey"));
    cmd.arg("up").arg("--config").arg(&config);
    let (status, err) = run_to_end(cmd);
    assert!(!status.success(), "{err}");
    let missing = lone.join("rosey-db").display().to_string();
    assert!(
        err.contains(&format!("{missing} is missing")) && err.contains("cargo build --workspace"),
        "{err}"
    );
    assert!(!err.contains("started (pid"), "nothing may start: {err}");
}

#[test]
fn up_with_a_server_that_is_not_nats_gives_up_with_the_reason() {
    // Something already listens on the configured loopback port but never speaks NATS, so
    // `rosey up` must neither start its own server nor retry forever. (Tests send traffic only
    // to loopback addresses.)
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rosey.json");
    std::fs::write(
        &config,
        json!({
            "nats": {
                "server": url,
                "connect_timeout": 0.5,
                "startup_retry": 1
            },
            "database": {"path": dir.path().join("rosey.db")},
            "plugins": {"directory": workspace_dir().join("plugins")}
        })
        .to_string(),
    )
    .unwrap();
    let mut cmd = command("rosey");
    cmd.arg("up").arg("--config").arg(&config);
    let (status, err) = run_to_end(cmd);
    drop(listener);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!("using the server already on {url}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("cannot connect to NATS at {url}")),
        "{err}"
    );
    assert!(!err.contains("started (pid"), "nothing may start: {err}");
}

#[test]
fn up_warns_when_the_existing_server_has_no_jetstream() {
    // Debian's packaged nats-server runs without JetStream; `rosey up` uses a server that is
    // already there, and must say plainly that writes are then not durable.
    let nats = rosey_tests::NatsServer::start_without_jetstream();
    let dir = tempfile::tempdir().unwrap();
    let config = console_config(dir.path());
    let mut text: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    text["nats"]["server"] = json!(nats.url());
    std::fs::write(&config, text.to_string()).unwrap();
    let mut up = RoseyUp::start(&config);
    up.wait_status("warning about JetStream", |l| {
        l.contains("WARNING") && l.contains("no JetStream")
    });
    let bot = up.wait_running("rosey-bot", None);
    up.ask(
        "!quote count",
        "<rosey> No quotes yet; add one with !quote add <text>.",
    );
    let mut child = up.child.take().unwrap();
    signal(child.id(), "TERM");
    let exited = wait_until(WAIT, || matches!(child.try_wait(), Ok(Some(_))));
    assert!(exited, "rosey up did not stop; status:\n{}", up.log());
    assert!(child.wait().unwrap().success());
    assert!(gone(bot));
}

#[test]
fn up_with_llm_enabled_starts_rosey_llm_after_rosey_db() {
    let dir = tempfile::tempdir().unwrap();
    let config = console_config(dir.path());
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    // Nothing listens on port 9: rosey-llm serves status all the same.
    json["llm"] = json!({"enabled": true, "provider": "ollama",
                         "ollama": {"base_url": "http://127.0.0.1:9", "model": "tiny"}});
    std::fs::write(&config, json.to_string()).unwrap();
    let up = RoseyUp::start(&config);
    for name in [
        "nats-server",
        "rosey-db",
        "rosey-llm",
        "rosey-runtime",
        "rosey-bot",
    ] {
        up.wait_running(name, None);
    }
    let log = up.log();
    let line_of = |name: &str, state: &str| {
        log.lines()
            .position(|l| status_pid(l, name, state).is_some())
            .unwrap_or_else(|| panic!("no {name} {state} in:\n{log}"))
    };
    // Started in order, each once the one before is ready.
    assert!(
        line_of("rosey-db", "running") < line_of("rosey-llm", "started"),
        "{log}"
    );
    assert!(
        line_of("rosey-llm", "running") < line_of("rosey-runtime", "started"),
        "{log}"
    );
    let server = json["nats"]["server"].as_str().unwrap().to_owned();
    let status: rosey_plugin_api::llm::Status =
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let client = operator_client(dir.path(), &server).await;
            rosey_plugin_api::reply::request_json(
                &client,
                rosey_plugin_api::subjects::llm::STATUS,
                &json!({}),
                Duration::from_secs(5),
            )
            .await
            .expect("rosey-llm answers")
        });
    assert_eq!(status.provider, "ollama");
    assert_eq!(status.default_model, "tiny");
}

/// `rosey up`'s operator credentials beside the configuration in `dir`: (user, password).
fn operator_credentials(dir: &Path) -> (String, String) {
    let path = dir.join(".rosey").join("nats-operator.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    (
        file["user"].as_str().unwrap().to_owned(),
        file["password"].as_str().unwrap().to_owned(),
    )
}

/// A client logged in as the operator of the `rosey up` running beside `dir`.
async fn operator_client(dir: &Path, server: &str) -> async_nats::Client {
    let (user, password) = operator_credentials(dir);
    async_nats::ConnectOptions::with_user_and_password(user.clone(), password)
        .custom_inbox_prefix(format!("_INBOX.{user}"))
        .connect(server)
        .await
        .expect("the operator connects")
}

#[test]
fn up_gives_each_process_its_own_user_and_the_admin_commands_the_operators() {
    let dir = tempfile::tempdir().unwrap();
    let (up, pids) = start_and_answer(dir.path());
    let config = dir.path().join("rosey.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let server = json["nats"]["server"].as_str().unwrap().to_owned();
    let state = dir.path().join(".rosey");

    // The operator's file is the owner's alone; the server's configuration holds no password.
    let operator_file = state.join("nats-operator.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&operator_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "{}", operator_file.display());
    let (user, password) = operator_credentials(dir.path());
    assert_eq!(user, "rosey-operator");
    assert!(password.len() >= 32, "a weak password: {password:?}");
    let conf = std::fs::read_to_string(state.join("nats-server.conf")).unwrap();
    assert!(conf.contains("authorization"), "{conf}");
    assert!(!conf.contains(&password), "a password in {conf}");

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        // A local user without the credentials can drive nothing.
        assert!(
            async_nats::connect(server.as_str()).await.is_err(),
            "an anonymous connection was accepted"
        );
        let wrong =
            async_nats::ConnectOptions::with_user_and_password("rosey-bot".into(), "guess".into())
                .connect(server.as_str())
                .await;
        assert!(wrong.is_err(), "a guessed password was accepted");
    });

    // Admin commands from the same checkout find the operator's credentials by themselves.
    let out = command("rosey")
        .args(["plugin", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("quotes"),
        "rosey plugin list: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = command("rosey")
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("rosey-db") && text.contains("rosey-runtime"),
        "rosey status: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Everything ran within its permissions.
    let nats_log = std::fs::read_to_string(state.join("logs").join("nats-server.log")).unwrap();
    assert!(
        !nats_log.contains("Violation"),
        "permission violations:\n{nats_log}"
    );

    stop_and_check(up, "TERM", false, &pids);
    assert!(
        !operator_file.exists(),
        "the operator's credentials outlived rosey up"
    );
}

#[test]
fn a_rosey_up_started_after_a_killed_one_logs_in_to_the_server_it_left() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, pids) = start_and_answer(dir.path());
    let mut child = first.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    for pid in &pids[1..] {
        assert!(
            wait_until(WAIT, || gone(*pid)),
            "pid {pid} outlived rosey up"
        );
    }
    // nats-server cannot follow its parent: it still runs, with that run's users.
    assert!(!gone(pids[0]), "nats-server went away");

    let config = dir.path().join("rosey.json");
    let mut second = RoseyUp::start(&config);
    second.wait_status("logging in with the left server's users", |l| {
        l.contains("logging in with the users of the run that started it")
    });
    for name in &CHILDREN[1..] {
        second.wait_running(name, None);
    }
    second.ask(
        "!quote count",
        "<rosey> No quotes yet; add one with !quote add <text>.",
    );
    let mut child = second.child.take().unwrap();
    signal(child.id(), "TERM");
    let exited = wait_until(WAIT, || matches!(child.try_wait(), Ok(Some(_))));
    assert!(exited, "rosey up did not stop; status:\n{}", second.log());
    assert!(child.wait().unwrap().success(), "{}", second.log());
    // `first`'s guard stops the server it left.
}

#[test]
fn up_runs_and_supervises_one_bot_per_channel() {
    let dir = tempfile::tempdir().unwrap();
    let config = console_config(dir.path());
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["platform"]["channels"] = json!([{"name": "lobby"}, {"name": "second"}]);
    std::fs::write(&config, json.to_string()).unwrap();
    let mut up = RoseyUp::start(&config);
    for name in ["nats-server", "rosey-db", "rosey-runtime"] {
        up.wait_running(name, None);
    }
    let first = up.wait_running("rosey-bot@lobby", None);
    let second = up.wait_running("rosey-bot@second", None);
    // The terminal's lines go to the first channel's bot, which answers them.
    up.ask(
        "!quote add many channels -- lead",
        "<rosey> Added quote #1.",
    );
    // A channel's bot that dies is restarted alone, told its channel again.
    signal(second, "KILL");
    let restarted = up.wait_running("rosey-bot@second", Some(second));
    assert_ne!(restarted, second);
    assert!(!gone(first), "the other channel's bot was left alone");
    // Each bot writes to its own channel's file.
    let second_db = dir.path().join("rosey.second.db");
    assert!(
        wait_until(WAIT, || second_db.exists()),
        "{} was never created",
        second_db.display()
    );
}
