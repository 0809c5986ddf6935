//! Shared by the `runtime_*` tests: fixture plugins copied, renamed and built with real cargo
//! into `<target>/test-plugins` (never the main target folder, whose lock cargo holds while
//! tests run), a running `rosey-runtime`, and helpers to talk to it over NATS.

use crate::{command, target_dir, workspace_dir, ChildGuard, NatsServer};
use futures::StreamExt;
use rosey_plugin_api::admin::{PluginInfo, PluginLifecycle, PluginsList};
use rosey_plugin_api::commands::Command;
use rosey_plugin_api::db::MessageLog;
use rosey_plugin_api::events::{Event, Message};
use rosey_plugin_api::subjects;
use rosey_plugin_api::{Timestamp, UserData};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long any condition may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The folder fixture plugins build into.
pub fn plugins_target() -> PathBuf {
    target_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(target_dir)
        .join("test-plugins")
}

/// A copy of a fixture plugin crate under its own name, so tests can edit and rebuild it
/// without disturbing each other.
pub struct Fixture {
    /// The plugin's (and crate's) name.
    pub name: String,
    /// The crate's folder.
    pub dir: PathBuf,
}

impl Fixture {
    /// Copies `tests/fixtures/plugins/<fixture>` to `<target>/test-plugins/src/<name>`, renamed
    /// to `name`.
    pub fn new(fixture: &str, name: &str) -> Fixture {
        Fixture::with_api(fixture, name, &workspace_dir().join("plugin-api"))
    }

    /// Like [`Fixture::new`], and built (debug).
    pub fn built(fixture: &str, name: &str) -> Fixture {
        let built = Fixture::new(fixture, name);
        built.build();
        built
    }

    /// Like [`Fixture::new`], built against the plugin-api crate in `api`.
    pub fn with_api(fixture: &str, name: &str, api: &Path) -> Fixture {
        let src = workspace_dir().join("tests/fixtures/plugins").join(fixture);
        let dir = plugins_target().join("src").join(name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let manifest = std::fs::read_to_string(src.join("Cargo.toml"))
            .unwrap()
            .replacen(
                &format!("name = \"{fixture}\""),
                &format!("name = \"{name}\""),
                1,
            )
            .replace(
                "path = \"../../../../plugin-api\"",
                &format!("path = {:?}", api.display().to_string()),
            );
        write_if_changed(&dir.join("Cargo.toml"), manifest.as_bytes());
        let lib = std::fs::read(src.join("src/lib.rs")).unwrap();
        write_if_changed(&dir.join("src/lib.rs"), &lib);
        let lock = std::fs::read(workspace_dir().join("Cargo.lock")).unwrap();
        if !dir.join("Cargo.lock").exists() {
            std::fs::write(dir.join("Cargo.lock"), lock).unwrap();
        }
        Fixture {
            name: name.to_owned(),
            dir,
        }
    }

    /// Replaces the `ANSWER` constant in the source.
    pub fn set_answer(&self, answer: &str) {
        let path = self.dir.join("src/lib.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("const ANSWER: &str = \"").unwrap();
        let end = start + text[start..].find(";\n").unwrap();
        let new = format!(
            "{}const ANSWER: &str = \"{answer}\"{}",
            &text[..start],
            &text[end..]
        );
        std::fs::write(&path, new).unwrap();
    }

    /// Builds the crate with cargo (debug) into the shared test-plugins folder.
    pub fn build(&self) {
        self.cargo_build(&[]);
    }

    /// Builds the crate with cargo in release mode.
    pub fn build_release(&self) {
        self.cargo_build(&["--release"]);
    }

    /// Runs `cargo build <profile_args> --quiet` on the crate into the test-plugins folder.
    fn cargo_build(&self, profile_args: &[&str]) {
        let status =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .arg("build")
                .args(profile_args)
                .arg("--quiet")
                .arg("--manifest-path")
                .arg(self.dir.join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", plugins_target())
                .env_remove("RUSTFLAGS")
                // The build tools keep the real clock when the suite runs under faketime
                // (scripts/test.sh): rustc hangs under libfaketime, and only Rosey is under test.
                .env_remove("LD_PRELOAD")
                .status()
                .expect("run cargo");
        let build = std::iter::once("cargo build")
            .chain(profile_args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(status.success(), "{build} of fixture {} failed", self.name);
    }

    /// Where cargo puts the release library.
    pub fn built_release_library(&self) -> PathBuf {
        plugins_target()
            .join("release")
            .join(format!("lib{}.so", self.name))
    }

    /// Where cargo puts the library.
    pub fn built_library(&self) -> PathBuf {
        plugins_target()
            .join("debug")
            .join(format!("lib{}.so", self.name))
    }

    /// Copies the built library into `dir` the way deploy tools do: a temporary file, then
    /// a rename over the old one.
    pub fn install_into(&self, dir: &Path) -> PathBuf {
        let dst = dir.join(format!("lib{}.so", self.name));
        let tmp = dir.join(format!(".lib{}.so.tmp", self.name));
        std::fs::copy(self.built_library(), &tmp).unwrap();
        std::fs::rename(&tmp, &dst).unwrap();
        dst
    }
}

/// A copy of plugin-api whose interface differs from the runtime's (one more `LogLevel`
/// variant) under the same version, as if a plugin had been built against a changed release
/// that forgot to bump it.
pub fn changed_plugin_api() -> PathBuf {
    plugin_api_copy("plugin-api-changed", &current_api_version(), |ffi| {
        let changed = ffi.replacen(
            "    /// Very fine detail.\n    Trace,\n",
            "    /// Very fine detail.\n    Trace,\n    /// Added after the runtime was built.\n    Fatal,\n",
            1,
        );
        assert_ne!(ffi, changed, "the LogLevel enum moved; update this test");
        changed
    })
}

/// A copy of plugin-api that says it is interface `version` (same code otherwise), as if a
/// plugin had been built against another release.
pub fn plugin_api_at_version(version: &str) -> PathBuf {
    plugin_api_copy(&format!("plugin-api-{version}"), version, str::to_owned)
}

/// The runtime's interface version: plugin-api's own.
pub fn current_api_version() -> String {
    let manifest = std::fs::read_to_string(workspace_dir().join("plugin-api/Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("plugin-api/Cargo.toml names its version")
        .to_owned()
}

/// Copies plugin-api into `<target>/test-plugins/src/<folder>` with `version` and its FFI
/// module passed through `edit`.
fn plugin_api_copy(folder: &str, version: &str, edit: impl Fn(&str) -> String) -> PathBuf {
    let src = workspace_dir().join("plugin-api");
    let dst = plugins_target().join("src").join(folder);
    copy_tree(&src.join("src"), &dst.join("src"));
    let manifest = format!(
        r#"[package]
name = "rosey-plugin-api"
version = "{version}"
edition = "2021"
publish = false

[features]
default = ["ffi"]
ffi = ["dep:abi_stable"]
nats = []

[dependencies]
abi_stable = {{ version = "0.11.3", optional = true }}
humantime = "2"
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
thiserror = "2"
"#
    );
    write_if_changed(&dst.join("Cargo.toml"), manifest.as_bytes());
    let ffi = dst.join("src/ffi/mod.rs");
    let text = std::fs::read_to_string(&ffi).unwrap();
    write_if_changed(&ffi, edit(&text).as_bytes());
    dst
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            write_if_changed(&to, &std::fs::read(entry.path()).unwrap());
        }
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        std::fs::write(path, bytes).unwrap();
    }
}

/// A running `rosey-runtime` with its configuration file and log.
pub struct Runtime {
    /// The process.
    pub child: ChildGuard,
    /// The folder holding the configuration and the log.
    pub dir: tempfile::TempDir,
}

impl Runtime {
    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("rosey.json")
    }

    /// Rewrites the configuration file (atomically, as editors do).
    pub fn write_config(&self, config: &serde_json::Value) {
        write_config(self.dir.path(), config);
    }

    /// The runtime's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("runtime.log")).unwrap_or_default()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // A failing test shows what the runtime said.
        if std::thread::panicking() {
            eprintln!("--- rosey-runtime log ---\n{}", self.log());
        }
        // A killed runtime cannot remove its library copies; do it for it.
        let pid = self.child.id();
        self.child.kill();
        if pid != 0 {
            let copies = std::env::temp_dir().join(format!("rosey-runtime-{pid}"));
            let _ = std::fs::remove_dir_all(copies);
        }
    }
}

fn write_config(dir: &Path, config: &serde_json::Value) {
    let tmp = dir.join("rosey.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("rosey.json")).unwrap();
}

/// A configuration for a runtime on `nats` serving `plugins_dir`, with fast timers; `plugins`
/// is merged into the `plugins` section.
pub fn config(
    nats: &NatsServer,
    plugins_dir: &Path,
    plugins: serde_json::Value,
) -> serde_json::Value {
    let mut section = serde_json::json!({
        "directory": plugins_dir,
        // The runtime and plugin suites test plugins in the runtime's process, as they always
        // have; `runtime_isolation` (and the `rosey up` suites, on the default) test host
        // processes.
        "isolation": "in_process",
        "tick_interval": 0.1,
        "watchdog_timeout": 1.5,
        "reload_debounce": 0.1,
        "restart_backoff_max": 0.5,
    });
    if let (Some(s), Some(extra)) = (section.as_object_mut(), plugins.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "nats": {"server": nats.url()},
        "platform": {"channel": "lobby"},
        "plugins": section,
    })
}

/// Starts `rosey-runtime` with `config`.
pub fn start_runtime(config: &serde_json::Value) -> Runtime {
    start_runtime_with(config, |cmd| cmd)
}

/// Starts `rosey-runtime` with `config`, the command (binary, `--config`, log) first passed
/// through `wrap` (to run it under another program or with another environment).
pub fn start_runtime_with(
    config: &serde_json::Value,
    wrap: impl FnOnce(std::process::Command) -> std::process::Command,
) -> Runtime {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), config);
    let log = std::fs::File::create(dir.path().join("runtime.log")).unwrap();
    let mut cmd = command("rosey-runtime");
    cmd.arg("--config")
        .arg(dir.path().join("rosey.json"))
        .env("RUST_LOG", "info");
    let mut cmd = wrap(cmd);
    cmd.stdout(Stdio::null()).stderr(log);
    Runtime {
        child: ChildGuard::spawn("rosey-runtime", cmd),
        dir,
    }
}

/// What [`serve`] starts besides the observer: a runtime, its fresh plugin folder and the
/// nats-server (fields in drop order: the runtime goes first).
pub struct Served {
    /// The running runtime.
    pub rt: Runtime,
    /// The runtime's plugin folder, holding the installed fixtures.
    pub libs: tempfile::TempDir,
    /// The server everything talks over.
    pub nats: NatsServer,
}

/// Starts a nats-server and an observer, installs the already-built `fixtures` into a fresh
/// folder, and starts a runtime on it with `plugins` merged into its plugins section.
pub async fn serve(fixtures: &[&Fixture], plugins: serde_json::Value) -> (Observer, Served) {
    let nats = NatsServer::start();
    let obs = Observer::new(&nats).await;
    let libs = tempfile::tempdir().unwrap();
    for fixture in fixtures {
        fixture.install_into(libs.path());
    }
    let rt = start_runtime(&config(&nats, libs.path(), plugins));
    (obs, Served { rt, libs, nats })
}

impl Served {
    /// Rewrites the runtime's configuration file with `plugins` as its plugins section.
    pub fn reconfigure(&self, plugins: serde_json::Value) {
        self.rt
            .write_config(&config(&self.nats, self.libs.path(), plugins));
    }
}

/// [`serve`] with only `fixture` enabled, once it has loaded.
pub async fn serve_loaded(fixture: &Fixture) -> (Observer, Served) {
    let (mut obs, served) = serve(&[fixture], serde_json::json!({"enabled": [fixture.name]})).await;
    obs.event(subjects::runtime::PLUGIN_LOADED, &fixture.name)
        .await;
    (obs, served)
}

/// A command as the bot would publish it.
pub fn command_payload(name: &str, text: &str, user: &str, rank: f64) -> Command {
    Command {
        command: name.to_owned(),
        args: text.split_whitespace().map(str::to_owned).collect(),
        text: text.to_owned(),
        raw: format!("!{name} {text}"),
        user: user.to_owned(),
        user_data: UserData::new(user, rank),
        is_pm: false,
        platform: "console".to_owned(),
        channel: "lobby".to_owned(),
        timestamp: Timestamp::now(),
    }
}

/// Publishes a chat line on `rosey.events.message` as the console bot would.
pub async fn publish_chat(
    client: &async_nats::Client,
    user: &str,
    content: &str,
    is_command: bool,
) {
    let event = Event {
        platform: "console".to_owned(),
        channel: "lobby".to_owned(),
        timestamp: Timestamp::now(),
        platform_data: serde_json::Value::Null,
        body: Message {
            user: user.to_owned(),
            user_data: None,
            content: content.to_owned(),
            is_command,
        },
    };
    client
        .publish(
            subjects::events::MESSAGE,
            serde_json::to_vec(&event).unwrap().into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
}

/// Stores `(user, message)` chat lines through the database stream as the bot would, waiting
/// for each to be acknowledged.
pub async fn store_chat_lines(client: &async_nats::Client, lines: &[(&str, &str)]) {
    let js = async_nats::jetstream::new(client.clone());
    for (user, message) in lines {
        let log = MessageLog {
            username: (*user).to_owned(),
            message: (*message).to_owned(),
            timestamp: Some(Timestamp::now()),
            user_data: None,
        };
        js.publish(
            subjects::db::MESSAGE_LOG,
            serde_json::to_vec(&log).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

/// The workspace's target folder, once it holds the shipped plugin `lib<name>.so`.
pub fn shipped_plugin_dir(name: &str) -> PathBuf {
    let dir = target_dir();
    assert!(
        dir.join(format!("lib{name}.so")).exists(),
        "{} has no lib{name}.so: run cargo build --workspace first",
        dir.display()
    );
    dir
}

/// A client with subscriptions to the chat replies and the lifecycle events.
pub struct Observer {
    /// The client.
    pub client: async_nats::Client,
    chat: async_nats::Subscriber,
    events: async_nats::Subscriber,
    backlog: Vec<(String, PluginLifecycle)>,
}

impl Observer {
    /// Connects and subscribes (before the runtime starts, so no event is missed).
    pub async fn new(nats: &NatsServer) -> Observer {
        let client = nats.connect().await;
        let chat = client
            .subscribe(
                subjects::platform::send("console", subjects::platform::action::CHAT).unwrap(),
            )
            .await
            .unwrap();
        let events = client
            .subscribe(subjects::runtime::PLUGIN_ALL)
            .await
            .unwrap();
        client.flush().await.unwrap();
        Observer {
            client,
            chat,
            events,
            backlog: Vec::new(),
        }
    }

    /// Publishes a command and flushes.
    pub async fn send(&self, name: &str, text: &str, user: &str, rank: f64) {
        self.publish_command(&command_payload(name, text, user, rank))
            .await;
        self.client.flush().await.unwrap();
    }

    /// Publishes a prepared command (one for another channel, or a PM) on its subject.
    pub async fn publish_command(&self, command: &Command) {
        self.client
            .publish(
                subjects::commands::command(&command.command).unwrap(),
                serde_json::to_vec(command).unwrap().into(),
            )
            .await
            .unwrap();
    }

    /// The next chat line the bot was asked to say.
    pub async fn next_chat(&mut self) -> String {
        let msg = tokio::time::timeout(PATIENCE, self.chat.next())
            .await
            .expect("a chat reply within the patience limit")
            .expect("chat subscription open");
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        v["content"].as_str().unwrap().to_owned()
    }

    /// The next chat line if one comes within `wait`.
    pub async fn try_next_chat(&mut self, wait: Duration) -> Option<String> {
        let msg = tokio::time::timeout(wait, self.chat.next()).await.ok()??;
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).ok()?;
        v["content"].as_str().map(str::to_owned)
    }

    /// Sends a command and returns the next chat line.
    pub async fn ask(&mut self, name: &str, text: &str) -> String {
        self.send(name, text, "alice", 1.0).await;
        self.next_chat().await
    }

    /// Waits for a lifecycle event on `subject` about `plugin` and returns it. Events of
    /// other kinds or plugins are kept for later calls: plugins load concurrently.
    pub async fn event(&mut self, subject: &str, plugin: &str) -> PluginLifecycle {
        if let Some(pos) = self
            .backlog
            .iter()
            .position(|(s, ev)| s == subject && ev.name == plugin)
        {
            return self.backlog.remove(pos).1;
        }
        let wait = async {
            while let Some(msg) = self.events.next().await {
                let ev: PluginLifecycle = serde_json::from_slice(&msg.payload).unwrap();
                if msg.subject.as_str() == subject && ev.name == plugin {
                    return ev;
                }
                self.backlog.push((msg.subject.to_string(), ev));
            }
            panic!("event subscription closed");
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {subject} event for {plugin}"))
    }

    /// Forgets the events received but not yet waited for.
    pub fn clear_backlog(&mut self) {
        self.backlog.clear();
    }

    /// Sends `{"name": plugin}` to the admin subject `subject` (enable, disable, reload) and
    /// returns the reply.
    pub async fn admin(&self, subject: &str, plugin: &str) -> async_nats::Message {
        self.client
            .request(
                subject.to_owned(),
                serde_json::to_vec(&serde_json::json!({"name": plugin}))
                    .unwrap()
                    .into(),
            )
            .await
            .unwrap()
    }

    /// `rosey.runtime.plugins.list`.
    pub async fn list(&self) -> Vec<PluginInfo> {
        let reply = self
            .client
            .request(subjects::runtime::PLUGINS_LIST, "{}".into())
            .await
            .unwrap();
        serde_json::from_slice::<PluginsList>(&reply.payload)
            .unwrap()
            .plugins
    }

    /// One plugin's row of the list.
    pub async fn info(&self, name: &str) -> PluginInfo {
        self.list()
            .await
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} is not listed"))
    }
}
