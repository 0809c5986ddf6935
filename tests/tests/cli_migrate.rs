//! `rosey migrate-config` and `rosey config check`, run as the operator would.

use rosey_config::{Config, PlatformKind};
use rosey_tests::command;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/configs")
        .join(name)
}

fn rosey(args: &[&str]) -> Output {
    command("rosey").args(args).output().expect("run rosey")
}

/// Runs `rosey` with `args` and asserts that it succeeded, showing its stderr otherwise.
fn rosey_ok(args: &[&str]) -> Output {
    let out = rosey(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that migrating the already converted `file` again reports so and changes nothing.
fn assert_second_run_changes_nothing(file: &Path) {
    let before = std::fs::read(file).unwrap();
    let again = rosey(&["migrate-config", file.to_str().unwrap(), "--backup"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already"));
    assert_eq!(std::fs::read(file).unwrap(), before);
}

fn copy_fixture(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(fixture(name), &to).expect("copy fixture");
    to
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read output")).expect("JSON")
}

#[test]
fn v1_file_converts_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let old = copy_fixture(dir.path(), "original-v1.json");
    let new = dir.path().join("new.json");
    rosey_ok(&[
        "migrate-config",
        old.to_str().unwrap(),
        "--output",
        new.to_str().unwrap(),
    ]);
    let v = read_json(&new);
    let p = &v["platform"];
    assert_eq!(p["type"], "cytube");
    assert_eq!(p["domain"], "https://cytu.be");
    assert_eq!(p["channel"], "AKWHR89327M");
    assert_eq!(p["channel_password"], "chanpass");
    assert_eq!(p["credentials"]["username"], "SaveTheRobots");
    assert_eq!(p["credentials"]["password"], "botpass");
    assert_eq!(p["response_timeout"], 0.1);
    assert_eq!(p["restart_delay"], 5);
    assert_eq!(p["retry"], 3);
    assert_eq!(p["retry_delay"], 10);
    assert_eq!(p["proxy"], "socks5://127.0.0.1:1080");
    assert_eq!(v["logging"]["level"], "warn");
    assert_eq!(v["logging"]["chat_log_file"], "chat.log");
    assert_eq!(v["logging"]["media_log_file"], "media.log");
    assert_eq!(v["logging"]["llm_log_file"], "llm.log");
    assert_eq!(v["shell"]["enabled"], true);
    assert_eq!(v["shell"]["host"], "localhost");
    assert_eq!(v["shell"]["port"], 5555);
    assert_eq!(v["database"]["path"], "bot_data.db");
    let original = read_json(&fixture("original-v1.json"));
    assert_eq!(v["llm"], original["llm"], "llm is copied verbatim");
    // The old file is untouched, and the result loads as our configuration.
    assert_eq!(read_json(&old), original);
    let config = Config::load(&new).expect("converted file loads");
    assert_eq!(config.platform.kind, PlatformKind::Cytube);
    assert_eq!(config.platform.channel.as_deref(), Some("AKWHR89327M"));
    // The whole llm block is typed now: every original key landed where it belongs.
    let llm = &config.llm;
    assert!(!llm.enabled);
    assert_eq!(llm.provider, rosey_config::LlmProvider::Ollama);
    assert_eq!(llm.max_tokens, 200);
    assert!(llm.log_only);
    assert_eq!(
        llm.openai.api_key.as_ref().map(|k| k.expose()),
        Some("sk-x")
    );
    assert_eq!(llm.openrouter.site_name.as_deref(), Some("n"));
    assert_eq!(llm.ollama.model, "llama");
    assert_eq!(llm.triggers.commands, ["!ai"]);
    assert_eq!(llm.triggers.keywords[0].phrases, ["hi"]);
    assert_eq!(
        llm.triggers.greetings.on_join.specific_users["bob"],
        rosey_config::SpecificUser::Greeting("hey bob".to_owned())
    );
    assert!(llm
        .system_prompt_file
        .as_ref()
        .unwrap()
        .ends_with("prompt.txt"));
}

#[test]
fn original_v2_file_converts_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let old = copy_fixture(dir.path(), "original-v2.json");
    let out = rosey_ok(&["migrate-config", old.to_str().unwrap(), "--backup"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plugins.enabled"),
        "warns about plugins.enabled: {stderr}"
    );
    let backup = dir.path().join("original-v2.json.bak");
    assert_eq!(read_json(&backup), read_json(&fixture("original-v2.json")));
    let v = read_json(&old);
    assert_eq!(v["nats"]["server"], "nats://127.0.0.1:4333");
    assert_eq!(v["nats"]["connect_timeout"], 5);
    assert_eq!(v["nats"]["max_reconnects"], -1);
    assert_eq!(v["nats"]["reconnect_delay"], 2);
    assert_eq!(v["database"]["path"], "data/rosey.db");
    assert_eq!(v["database"]["service_enabled"], true);
    assert_eq!(v["platform"]["channel"], "lobby");
    assert_eq!(v["platform"]["credentials"]["username"], "rosey");
    assert_eq!(v["platform"]["response_timeout"], 1);
    assert_eq!(v["shell"]["port"], 5555);
    assert_eq!(v["logging"]["level"], "info");
    assert_eq!(v["plugins"]["enabled"], serde_json::json!([]));
    assert_eq!(v["plugins"]["directory"], "plugins/");
    assert_eq!(v["plugins"]["hot_reload"], false);
    assert_eq!(v["_comment"], "written by the original");
    Config::load(&old).expect("converted file loads");
    // Running it again leaves the file (now ours) untouched.
    assert_second_run_changes_nothing(&old);
}

#[test]
fn null_shell_which_crashed_the_original_disables_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.json");
    std::fs::write(
        &old,
        r#"{"domain": "https://cytu.be", "channel": "c", "user": null, "shell": null}"#,
    )
    .unwrap();
    let new = dir.path().join("new.json");
    let out = rosey_ok(&[
        "migrate-config",
        old.to_str().unwrap(),
        "-o",
        new.to_str().unwrap(),
    ]);
    let v = read_json(&new);
    assert_eq!(v["shell"]["enabled"], false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("user: null"));
    let config = Config::load(&new).expect("loads");
    assert!(!config.shell.enabled);
}

#[test]
fn refuses_to_overwrite_and_reports_unreadable_input() {
    let dir = tempfile::tempdir().unwrap();
    let old = copy_fixture(dir.path(), "original-v1.json");
    let before = std::fs::read(&old).unwrap();
    let out = rosey(&["migrate-config", old.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backup"));
    assert_eq!(std::fs::read(&old).unwrap(), before);

    let existing = dir.path().join("exists.json");
    std::fs::write(&existing, "{}").unwrap();
    let out = rosey(&[
        "migrate-config",
        old.to_str().unwrap(),
        "-o",
        existing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "{}");

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{ nope").unwrap();
    let out = rosey(&["migrate-config", broken.to_str().unwrap(), "--backup"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
    let missing = rosey(&["migrate-config", "/nonexistent/rosey.json", "--backup"]);
    assert!(!missing.status.success());
}

#[test]
fn config_check_hides_secrets_and_names_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rosey.json");
    std::fs::write(
        &file,
        r#"{"platform": {"type": "cytube", "domain": "https://cytu.be", "channel": "c",
            "credentials": {"username": "bot", "password": "hunter2-secret"}}}"#,
    )
    .unwrap();
    let out = rosey_ok(&["config", "check", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("hunter2-secret"), "{stdout}");
    let shown: Value = serde_json::from_str(&stdout).expect("prints JSON");
    assert_eq!(shown["platform"]["channel"], "c");

    std::fs::write(&file, r#"{"platform": {"tpye": "cytube"}}"#).unwrap();
    let out = rosey(&["config", "check", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("platform.tpye"), "{stderr}");
}

#[test]
fn several_platforms_become_channels_and_config_check_names_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.json");
    std::fs::write(
        &original,
        r#"{"version": "2.0", "database": {"path": "bot_data.db"}, "platforms": [
            {"name": "a", "type": "cytube", "domain": "https://cytu.be", "channel": "first",
             "user": ["bot", "pw-secret"], "enabled": true},
            {"name": "b", "type": "cytube", "domain": "https://cytu.be", "channel": "off",
             "enabled": false},
            {"name": "c", "type": "cytube", "domain": "https://cytu.be",
             "channel": ["second", "chan-secret"], "user": ["bot", "pw-secret"]}]}"#,
    )
    .unwrap();
    let migrated = dir.path().join("rosey.json");
    rosey_ok(&[
        "migrate-config",
        original.to_str().unwrap(),
        "--output",
        migrated.to_str().unwrap(),
    ]);
    let out = rosey_ok(&["config", "check", migrated.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("chan-secret"), "{stdout}");
    let shown: Value = serde_json::from_str(&stdout).expect("prints JSON");
    let names: Vec<&str> = shown["platform"]["channels"]
        .as_array()
        .expect("a channel list")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "second"]);
    let first = dir.path().join("bot_data.db");
    let second = dir.path().join("bot_data.second.db");
    assert!(
        stderr.contains(&format!("channel first in {}", first.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("channel second in {}", second.display())),
        "{stderr}"
    );
}
