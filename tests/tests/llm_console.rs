//! LLM chat end to end through the console bot: a line typed into `rosey-bot` reaches the mock
//! provider through `rosey-runtime`, the `llm` plugin and `rosey-llm`, and the answer comes out
//! of the console; meanwhile every process but `rosey-llm` runs without the provider key's
//! variable (each process resolves only the secrets its role reads), and the key shows up in no
//! log line of any process, at trace level.

mod bot_support;
mod llm_support;
mod runtime_support;

use bot_support::ConsoleBot;
use llm_support::{openai_ok, rosey_llm_answers, Mock};
use rosey_tests::{command, wait_for_rosey_db, ChildGuard, NatsServer};
use runtime_support::{shipped_plugin_dir, start_runtime_with, Observer, PATIENCE};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const KEY: &str = "sk-console-e2e-5b0c9a7e31d4";
const KEY_VAR: &str = "ROSEY_TEST_CONSOLE_LLM_KEY";
const SYSTEM_PROMPT: &str = "You are Rosey, a friendly bot.";

/// Starts `name` on `config` with every log line (`RUST_LOG=trace`) in `<dir>/<name>.log`.
fn spawn_logged(
    name: &str,
    config: &Path,
    dir: &Path,
    wrap: impl FnOnce(&mut Command),
) -> ChildGuard {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut cmd = command(name);
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "trace")
        .env_remove(KEY_VAR)
        .stdout(Stdio::null())
        .stderr(log);
    wrap(&mut cmd);
    ChildGuard::spawn(name, cmd)
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_typed_in_the_console_is_answered_and_the_key_stays_in_rosey_llm() {
    let nats = NatsServer::start();
    let mut obs = Observer::new(&nats).await;
    let mock = Mock::start(openai_ok("unexpected", "gpt-test")).await;
    mock.push(openai_ok("NATS is a message bus.", "gpt-test"));
    let dir = tempfile::tempdir().unwrap();
    let prompt_file = dir.path().join("prompt.txt");
    std::fs::write(&prompt_file, SYSTEM_PROMPT).unwrap();
    let config = json!({
        "nats": {"server": nats.url()},
        "platform": {
            "type": "console",
            "console_user": "tester",
            "credentials": {"username": "rosey"},
            "status_interval": 0.2,
            "outbound_poll_interval": 0.2
        },
        "database": {"path": dir.path().join("rosey.db")},
        "plugins": {
            "directory": shipped_plugin_dir("llm"),
            "hot_reload": false,
            "tick_interval": 0.1,
            "config": {"llm": {"seed": 7, "user_cooldown_seconds": 0}}
        },
        "llm": {
            "enabled": true,
            "provider": "openai",
            "openai": {"base_url": format!("{}/v1", mock.base()), "model": "gpt-test",
                       "api_key_env": KEY_VAR},
            "system_prompt_file": prompt_file,
            "temperature": 0.3,
            "max_tokens": 60,
            "gateway": {"request_timeout": 20, "max_retries": 0}
        }
    });
    let path = dir.path().join("rosey.json");
    std::fs::write(&path, config.to_string()).unwrap();

    // rosey-llm refuses to start without its key, and says why.
    let out = command("rosey-llm")
        .arg("--config")
        .arg(&path)
        .env_remove(KEY_VAR)
        .output()
        .expect("run rosey-llm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rosey-llm started without its key");
    assert!(
        stderr.contains(&format!(
            "llm.openai.api_key_env: environment variable `{KEY_VAR}` is not set"
        )),
        "{stderr}"
    );

    let _db = spawn_logged("rosey-db", &path, dir.path(), |_| {});
    wait_for_rosey_db(&obs.client, PATIENCE).await;
    let _llm = spawn_logged("rosey-llm", &path, dir.path(), |cmd| {
        cmd.env(KEY_VAR, KEY);
    });
    assert!(
        rosey_llm_answers(&obs.client, PATIENCE).await,
        "rosey-llm never answered: {}",
        log_of(dir.path(), "rosey-llm")
    );
    let rt = start_runtime_with(&config, |mut cmd| {
        cmd.env("RUST_LOG", "trace").env_remove(KEY_VAR);
        cmd
    });
    obs.event(rosey_plugin_api::subjects::runtime::PLUGIN_LOADED, "llm")
        .await;
    let mut bot = ConsoleBot::start_with(&config, |mut cmd| {
        cmd.env("RUST_LOG", "trace").env_remove(KEY_VAR);
        cmd
    });

    bot.type_line("!ask what is NATS?");
    assert_eq!(bot.next_stdout(), "<rosey> tester: NATS is a message bus.");
    let seen = mock.seen();
    assert_eq!(seen.len(), 1, "one request reached the provider");
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(
        seen[0].headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {KEY}").as_str()),
        "rosey-llm sent the key"
    );
    assert_eq!(
        seen[0].body["messages"],
        json!([{"role": "system", "content": SYSTEM_PROMPT},
               {"role": "user", "content": "what is NATS?"}])
    );

    // Every process logged at trace level; none shows the key. The bot and the runtime dumped
    // their configuration with the key as an unresolved reference.
    bot.stdin.take();
    bot.child.terminate(Duration::from_secs(10));
    let unresolved = format!("<unresolved: environment variable `{KEY_VAR}`>");
    let logs = [
        ("rosey-bot", bot.log()),
        ("rosey-runtime", rt.log()),
        ("rosey-llm", log_of(dir.path(), "rosey-llm")),
        ("rosey-db", log_of(dir.path(), "rosey-db")),
    ];
    for (name, log) in &logs {
        assert!(
            log.lines().count() > 5,
            "{name} logged at trace level: {log}"
        );
        assert!(!log.contains(KEY), "{name} logged the key");
        assert!(!log.contains(&KEY[3..15]), "{name} logged part of the key");
    }
    for (name, log) in &logs[..2] {
        assert!(
            log.contains("configuration: Config {") && log.contains(&unresolved),
            "{name} did not dump its configuration with the key unresolved"
        );
    }
    assert!(
        logs[2].1.contains("api_key: Some(***)"),
        "rosey-llm holds the key (redacted in its dump)"
    );
}
