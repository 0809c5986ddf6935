//! LLM chat end to end through the console bot: a line typed into `rosey-bot` reaches the mock
//! provider through `rosey-runtime`, the `llm` plugin and `rosey-llm`, and the answer comes out
//! of the console; meanwhile every process but `rosey-llm` runs without the provider key's
//! variable (each process resolves only the secrets its role reads), the key is in the memory
//! of `rosey-llm` alone (a scan of each live process's pages), and it shows up in no log line
//! of any process, at trace level.

use rosey_tests::bot_support::ConsoleBot;
use rosey_tests::llm_support::{openai_ok, rosey_llm_answers, Mock};
use rosey_tests::runtime_support::{shipped_plugin_dir, start_runtime_with, Observer, PATIENCE};
use rosey_tests::{command, wait_for_rosey_db, ChildGuard, NatsServer};
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

/// What `<dir>/<name>.log` holds so far.
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

    let db = spawn_logged("rosey-db", &path, dir.path(), |_| {});
    wait_for_rosey_db(&obs.client, PATIENCE).await;
    let llm = spawn_logged("rosey-llm", &path, dir.path(), |cmd| {
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

    // The key is in rosey-llm's memory (its environment, its provider) and in no other
    // process's: not the bot's, the runtime's (which ran the plugin) or rosey-db's.
    let llm_pid = llm.id();
    assert!(
        memory_contains(llm_pid, KEY.as_bytes()),
        "the memory scan finds the key where it is"
    );
    for (name, pid) in [
        ("rosey-bot", bot.child.id()),
        ("rosey-runtime", rt.child.id()),
        ("rosey-db", db.id()),
    ] {
        assert!(
            !memory_contains(pid, KEY.as_bytes()),
            "{name} holds the key"
        );
    }

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
    for (name, log) in logs.iter().filter(|(name, _)| *name != "rosey-llm") {
        assert!(
            log.contains("configuration: Config {") && log.contains(&unresolved),
            "{name} did not dump its configuration with the key unresolved"
        );
    }
    assert!(
        logs[2].1.contains("configuration: Config {") && logs[2].1.contains("api_key: Some(***)"),
        "rosey-llm holds the key (redacted in its dump)"
    );
}

/// Whether `needle` is anywhere in the memory of the live process `pid`: every readable region
/// of `/proc/<pid>/maps`, read through `/proc/<pid>/mem` one run of pages at a time, only the
/// pages that are in memory or swapped out (`/proc/<pid>/pagemap`; a page never touched holds
/// only zeros, and allocators reserve gigabytes of those). Regions the kernel refuses to read
/// (`[vvar]`) are skipped.
fn memory_contains(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const PAGE: u64 = 4096;
    // pagemap entry bits: 63 = present in memory, 62 = swapped out.
    const IN_USE: u64 = (1 << 63) | (1 << 62);
    let open = |what: &str| {
        std::fs::File::open(format!("/proc/{pid}/{what}"))
            .unwrap_or_else(|e| panic!("cannot open /proc/{pid}/{what}: {e}"))
    };
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("cannot read the memory map of {pid}: {e}"));
    let (mut mem, mut pagemap) = (open("mem"), open("pagemap"));
    let read_at = |file: &mut std::fs::File, offset: u64, buf: &mut [u8]| {
        file.seek(SeekFrom::Start(offset)).is_ok() && file.read_exact(buf).is_ok()
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        if !perms.starts_with('r') || end <= start {
            continue;
        }
        let pages = ((end - start) / PAGE) as usize;
        let mut entries = vec![0u8; pages * 8];
        if !read_at(&mut pagemap, start / PAGE * 8, &mut entries) {
            continue;
        }
        let in_use: Vec<bool> = entries
            .chunks_exact(8)
            .map(|e| u64::from_le_bytes(e.try_into().unwrap()) & IN_USE != 0)
            .collect();
        let mut page = 0;
        while page < pages {
            if !in_use[page] {
                page += 1;
                continue;
            }
            let run = in_use[page..].iter().take_while(|used| **used).count();
            let mut bytes = vec![0u8; run * PAGE as usize];
            if read_at(&mut mem, start + page as u64 * PAGE, &mut bytes)
                && memchr::memmem::find(&bytes, needle).is_some()
            {
                return true;
            }
            page += run;
        }
    }
    false
}
