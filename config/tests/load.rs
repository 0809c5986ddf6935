//! Loading valid files: the PRD example, the embedded defaults and the free-form sections.

mod common;

use std::time::Duration;

use rosey_config::{Config, LogFormat, PlatformKind};
use serde_json::json;

use common::{fixture, load};

#[test]
fn loads_the_prd_v2_example() {
    let path = fixture("prd-v2-example.json");
    let config = Config::load(&path).unwrap();
    let folder = path.parent().unwrap();

    assert_eq!(config.version, "2.0");
    assert_eq!(config.platform.kind, PlatformKind::Cytube);
    assert_eq!(config.platform.domain.as_deref(), Some("https://cytu.be"));
    assert_eq!(config.platform.channel.as_deref(), Some("AKWHR89327M"));
    assert_eq!(config.platform.credentials.username, "SaveTheRobots");
    let password = config.platform.credentials.password.as_ref().unwrap();
    assert_eq!(password.expose(), "password");

    assert_eq!(config.nats.server, "nats://localhost:4222");
    assert_eq!(config.nats.client_id.as_deref(), Some("rosey-bot-1"));
    assert_eq!(
        config.nats.reconnect_delay.as_duration(),
        Duration::from_secs(2)
    );
    assert_eq!(config.nats.reconnect_limit(), None);

    assert_eq!(config.database.path, folder.join("bot_data.db"));
    assert!(config.database.service_enabled);
    assert_eq!(config.database.nats_subjects.len(), 3);

    assert_eq!(config.plugins.directory, folder.join("./plugins"));
    assert_eq!(config.plugins.enabled, ["markov", "quotes"]);
    assert!(config.plugins.hot_reload);
    assert!(config.plugins.is_enabled("quotes"));

    assert_eq!(config.llm, rosey_config::LlmConfig::default());
    assert_eq!(config.web, rosey_config::WebConfig::default());
    assert!(config.shell.enabled);
    assert_eq!(config.shell.port, Some(5555));

    assert_eq!(config.warnings().len(), 1, "{:?}", config.warnings());
    assert!(config.warnings()[0].contains("nats.cluster_id"));
}

#[test]
fn embedded_defaults_are_sane() {
    let config = Config::default();
    assert_eq!(config.version, "2.0");
    assert_eq!(config.platform.kind, PlatformKind::Console);
    assert_eq!(config.platform.console_user, "console");
    assert_eq!(config.platform.command_prefix, "!");
    assert_eq!(config.platform.credentials.username, "rosey");
    assert!(config.platform.credentials.password.is_none());
    assert_eq!(config.platform.chat_rate.burst, 4);
    assert_eq!(config.platform.chat_rate.per_second, 1.0);
    assert_eq!(
        config.platform.response_timeout.as_duration(),
        Duration::from_millis(100)
    );
    assert_eq!(
        config.platform.restart_delay.as_duration(),
        Duration::from_secs(5)
    );
    assert_eq!(
        config.platform.ping_timeout.as_duration(),
        Duration::from_secs(60)
    );
    assert_eq!(config.platform.flood.commands_per_minute, 12);
    assert_eq!(config.platform.max_message_len, 320);
    assert_eq!(config.nats.server, "nats://localhost:4222");
    assert_eq!(config.nats.max_reconnects, -1);
    assert_eq!(
        config.nats.startup_retry.as_duration(),
        Duration::from_secs(5)
    );
    assert_eq!(config.database.path.to_str(), Some("bot_data.db"));
    assert_eq!(config.database.stream.max_bytes, 1 << 30);
    assert_eq!(
        config.database.stream.max_age(),
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(
        config.database.batch_wait.as_duration(),
        Duration::from_millis(5)
    );
    assert_eq!(config.plugins.directory.to_str(), Some("./plugins"));
    assert_eq!(config.plugins.enabled, ["markov", "quotes", "llm"]);
    assert_eq!(
        config.plugins.reload_debounce.as_duration(),
        Duration::from_millis(150)
    );
    assert_eq!(config.plugins.queue_capacity, 1024);
    assert!(config.shell.enabled);
    assert_eq!(config.logging.level, "info");
    assert_eq!(config.logging.format, LogFormat::Text);
    assert!(!config.llm.enabled);
    assert!(config.warnings().is_empty());
}

#[test]
fn an_empty_object_gives_the_defaults_with_paths_in_the_folder() {
    let config = load("{}").unwrap();
    let mut expected = Config::default();
    expected.database.path = "/etc/rosey/bot_data.db".into();
    expected.plugins.directory = "/etc/rosey/./plugins".into();
    assert_eq!(config, expected);
}

#[test]
fn comment_keys_and_the_version_are_accepted() {
    let config = load(r#"{"version": "2.0", "_comment": "hi", "_note": ["x"]}"#).unwrap();
    assert_eq!(config.version, "2.0");
}

#[test]
fn free_form_sections_take_any_key() {
    let config = load(
        r#"{
            "metrics": {"anything": [1, 2, {"deep": null}]},
            "plugins": {
                "enabled": ["markov"],
                "config": {
                    "markov": {
                        "order": 2,
                        "nested": {"whatever": true},
                        "channels": ["lobby"],
                        "exclude_channels": ["quiet"],
                        "permissions": {"publish": ["rosey.markov.>"], "request": ["rosey.db.kv.*"]}
                    },
                    "quotes": {}
                }
            }
        }"#,
    )
    .unwrap();
    assert_eq!(config.metrics.value()["anything"][2], json!({"deep": null}));

    let markov = config.plugins.settings("markov").unwrap();
    assert_eq!(markov.channels.as_deref(), Some(&["lobby".to_owned()][..]));
    assert_eq!(markov.exclude_channels, ["quiet"]);
    let permissions = markov.permissions.as_ref().unwrap();
    assert_eq!(permissions.publish, ["rosey.markov.>"]);
    assert!(permissions.subscribe.is_empty());
    assert_eq!(permissions.request, ["rosey.db.kv.*"]);
    assert_eq!(
        markov.plugin_json(),
        &json!({"order": 2, "nested": {"whatever": true}})
    );
    assert!(markov.serves_channel("lobby"));
    assert!(!markov.serves_channel("quiet"));
    assert!(!markov.serves_channel("other"));

    let quotes = config.plugins.settings("quotes").unwrap();
    assert!(quotes.channels.is_none());
    assert!(quotes.serves_channel("anything"));
    assert_eq!(quotes.plugin_json(), &json!({}));
}

#[test]
fn full_cytube_file_with_every_section() {
    let config = load(
        r#"{
            "version": "2.0",
            "platform": {
                "type": "cytube", "domain": "http://localhost:8080", "channel": "test",
                "channel_password": "chanpw",
                "credentials": {"username": "bot"},
                "command_prefix": "?", "chat_rate": {"burst": 2, "per_second": 0.5},
                "response_timeout": 1, "restart_delay": 0, "proxy": "socks5h://proxy:1080",
                "retry": 3, "retry_delay": 1.5, "outbound_poll_interval": 0.5,
                "flood": {"commands_per_minute": 30, "block_seconds": 60},
                "reconnect_min_delay": 2, "reconnect_max_delay": 120, "max_message_len": 240
            },
            "nats": {"server": "nats://a:4222, nats://b:4222", "max_reconnects": 10,
                     "user": "rosey", "password": "natspw", "tls": {"ca_file": "ca.pem"}},
            "database": {"path": "/var/lib/rosey/db.sqlite", "service_enabled": false,
                         "stream": {"max_age_days": 1, "max_bytes": 1000, "duplicate_window": 30},
                         "batch_size": 10, "batch_wait": 0},
            "shell": {"enabled": false},
            "logging": {"level": "debug", "format": "json", "chat_log_file": "logs/chat.log"}
        }"#,
    )
    .unwrap();
    assert!(config.platform.credentials.password.is_none());
    assert_eq!(
        config.platform.channel_password.as_ref().unwrap().expose(),
        "chanpw"
    );
    assert_eq!(config.platform.retry, Some(3));
    assert_eq!(
        config.platform.retry_delay.unwrap().as_duration(),
        Duration::from_millis(1500)
    );
    assert_eq!(config.platform.restart_delay.as_duration(), Duration::ZERO);
    assert_eq!(config.nats.servers(), ["nats://a:4222", "nats://b:4222"]);
    assert_eq!(config.nats.reconnect_limit(), Some(10));
    assert_eq!(
        config.nats.tls.ca_file.as_deref(),
        Some("/etc/rosey/ca.pem".as_ref())
    );
    assert_eq!(
        config.database.path.to_str(),
        Some("/var/lib/rosey/db.sqlite")
    );
    assert_eq!(
        config.database.stream.duplicate_window.as_duration(),
        Duration::from_secs(30)
    );
    assert_eq!(config.logging.format, LogFormat::Json);
    assert!(!config.shell.enabled);
}

#[test]
fn redacted_json_is_the_effective_config() {
    let config = Config::load(&fixture("prd-v2-example.json")).unwrap();
    let json = config.to_redacted_json();
    assert_eq!(json["version"], "2.0");
    assert_eq!(json["platform"]["credentials"]["password"], "***");
    assert_eq!(
        json["platform"]["chat_rate"],
        json!({"burst": 4, "per_second": 1.0})
    );
    assert_eq!(json["platform"]["response_timeout"], json!(0.1));
    assert_eq!(json["nats"]["startup_retry"], json!(5));
    assert_eq!(json["llm"]["enabled"], json!(false));
    assert_eq!(json["llm"]["provider"], json!("ollama"));
    assert_eq!(json["web"]["listen"], rosey_config::DEFAULT_WEB_LISTEN);
    assert!(json["web"].get("password").is_none());
    // The printed form loads again (minus secrets) to the same values.
    let mut printed = json.clone();
    printed["platform"]["credentials"]["password"] = json!("password");
    let again = Config::from_json_str(&printed.to_string(), "printed", "/".as_ref()).unwrap();
    assert_eq!(again.to_redacted_json(), json);
}

#[test]
fn the_proxy_is_socks5_with_its_password_as_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxy.pass"), "hunter2\n").unwrap();
    let load = |platform: serde_json::Value| {
        Config::from_json_str(
            &serde_json::json!({ "platform": platform }).to_string(),
            "config.json",
            dir.path(),
        )
    };
    let config = load(serde_json::json!({
        "proxy": "socks5h://alice@tor.example:9050",
        "proxy_password_file": "proxy.pass"
    }))
    .unwrap();
    let proxy = config.platform.socks_proxy().unwrap().expect("a proxy");
    assert_eq!(
        (
            proxy.host.as_str(),
            proxy.port,
            proxy.username.as_deref(),
            proxy.remote_dns
        ),
        ("tor.example", 9050, Some("alice"), true)
    );
    assert_eq!(
        config.platform.proxy_password.as_ref().map(|s| s.expose()),
        Some("hunter2")
    );
    // The original's form: port 1080, names resolved by the proxy.
    let original = load(serde_json::json!({"proxy": "10.1.2.3"})).unwrap();
    let proxy = original.platform.socks_proxy().unwrap().expect("a proxy");
    assert_eq!((proxy.port, proxy.remote_dns), (1080, true));

    let err = load(serde_json::json!({"proxy": "http://proxy:3128"})).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("config.json: platform.proxy: http:// proxies are not supported"),
        "{err}"
    );
    let err = load(serde_json::json!({"proxy": "proxy:1080", "proxy_password": "x"})).unwrap_err();
    assert!(
        err.to_string()
            .contains("platform.proxy_password: needs a user name"),
        "{err}"
    );
}

#[test]
fn the_runtime_gets_the_llm_plugin_and_its_settings_when_llm_is_enabled() {
    let config = load(
        r#"{"plugins": {"enabled": ["quotes"],
                        "config": {"llm": {"seed": 7, "channels": ["lobby"],
                                           "triggers": {"commands": ["!gpt"]}}}},
            "llm": {"enabled": true, "max_tokens": 99,
                    "triggers": {"direct_mention": false}}}"#,
    )
    .unwrap();
    let plugins = config.runtime_plugins();
    assert_eq!(plugins.enabled, ["quotes", "llm"]);
    let settings = plugins.settings("llm").unwrap();
    assert_eq!(
        settings.channels.as_deref(),
        Some(&["lobby".to_owned()][..])
    );
    let json = settings.plugin_json();
    assert_eq!(json["enabled"], json!(true));
    assert_eq!(json["max_tokens"], json!(99));
    assert_eq!(json["seed"], json!(7));
    assert_eq!(json["triggers"]["direct_mention"], json!(false));
    // The operator's keys win over the llm section's.
    assert_eq!(json["triggers"]["commands"], json!(["!gpt"]));
    assert!(json.get("channels").is_none());
    assert!(json.get("openai").is_none() && json.get("gateway").is_none());
    // The file's own plugins section is untouched.
    assert_eq!(config.plugins.enabled, ["quotes"]);

    let off = load(r#"{"plugins": {"enabled": ["quotes"]}}"#).unwrap();
    let plugins = off.runtime_plugins();
    assert_eq!(plugins.enabled, ["quotes"]);
    assert_eq!(
        plugins.settings("llm").unwrap().plugin_json()["enabled"],
        json!(false)
    );
}

#[test]
fn web_section_is_typed_with_a_secret_password() {
    std::env::set_var("ROSEY_TEST_WEB_PASSWORD", "hunter22");
    let config = load(
        r#"{"web": {"listen": "0.0.0.0:9000", "public_read": true,
                    "password_env": "ROSEY_TEST_WEB_PASSWORD"}}"#,
    )
    .unwrap();
    assert_eq!(config.web.listen, "0.0.0.0:9000");
    assert!(config.web.public_read);
    assert_eq!(
        config.web.password.as_ref().map(|p| p.expose()),
        Some("hunter22")
    );
    assert_eq!(config.to_redacted_json()["web"]["password"], "***");
    for (bad, key) in [
        (r#"{"web": {"listen": "nowhere"}}"#, "web.listen"),
        (r#"{"web": {"say_per_minute": 0}}"#, "web.say_per_minute"),
        (r#"{"web": {"password": ""}}"#, "web.password"),
        (r#"{"web": {"colour": "red"}}"#, "colour"),
    ] {
        let err = load(bad).unwrap_err().to_string();
        assert!(err.contains(key), "{bad}: {err}");
    }
}
