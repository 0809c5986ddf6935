//! The bot's and the plugin runtime's timing keys: their defaults (the processes' former
//! constants), values read from the file, and values that would break a process rejected with
//! the key path.

mod common;

use std::time::Duration;

use rosey_config::Config;

use common::{assert_rejects, load};

#[test]
fn platform_defaults_match_the_bots_former_constants() {
    let p = Config::default().platform;
    assert_eq!(p.connect_timeout.as_duration(), Duration::from_secs(20));
    assert_eq!(p.live_publish_timeout.as_duration(), Duration::from_secs(1));
    assert_eq!(
        p.outbound_duplicate_window.as_duration(),
        Duration::from_secs(600)
    );
    assert_eq!(p.outbound_retry_pause_override, None);
    // Five poll intervals of 2 s.
    assert_eq!(p.outbound_retry_pause(), Duration::from_secs(10));
    assert_eq!(p.stream_setup_timeout.as_duration(), Duration::from_secs(5));
    assert_eq!(
        p.stream_setup_max_delay.as_duration(),
        Duration::from_secs(5)
    );
    assert_eq!(
        p.db_write_retry_max_delay.as_duration(),
        Duration::from_secs(2)
    );
    assert_eq!(
        p.shutdown_flush_timeout.as_duration(),
        Duration::from_secs(5)
    );
    assert_eq!(load(r#"{"platform": {}}"#).unwrap().platform, p);
}

#[test]
fn plugins_defaults_match_the_runtimes_former_constants() {
    let plugins = Config::default().plugins;
    assert_eq!(plugins.admin_timeout.as_duration(), Duration::from_secs(30));
    assert_eq!(
        plugins.max_request_timeout.as_duration(),
        Duration::from_secs(60)
    );
    assert_eq!(
        plugins.shutdown_timeout.as_duration(),
        Duration::from_secs(1)
    );
    let mut loaded = load(r#"{"plugins": {}}"#).unwrap().plugins;
    // The folder is resolved against the file's folder.
    loaded.directory = plugins.directory.clone();
    assert_eq!(loaded, plugins);
}

#[test]
fn the_outbound_retry_pause_follows_the_poll_interval_unless_given() {
    let fast = load(r#"{"platform": {"outbound_poll_interval": 0.2}}"#).unwrap();
    assert_eq!(fast.platform.outbound_retry_pause(), Duration::from_secs(5));
    let slow = load(r#"{"platform": {"outbound_poll_interval": 3}}"#).unwrap();
    assert_eq!(
        slow.platform.outbound_retry_pause(),
        Duration::from_secs(15)
    );
    let given =
        load(r#"{"platform": {"outbound_poll_interval": 3, "outbound_retry_pause": 0.05}}"#)
            .unwrap();
    assert_eq!(
        given.platform.outbound_retry_pause(),
        Duration::from_millis(50)
    );
}

#[test]
fn values_are_read_in_seconds() {
    let config = load(
        r#"{"platform": {"connect_timeout": 0.25, "live_publish_timeout": 0.01,
                          "outbound_duplicate_window": 1.5, "stream_setup_timeout": 0.1,
                          "stream_setup_max_delay": 0.2, "db_write_retry_max_delay": 0.03,
                          "shutdown_flush_timeout": 0.4},
            "plugins": {"admin_timeout": 0.5, "max_request_timeout": 0.75,
                        "shutdown_timeout": 0}}"#,
    )
    .unwrap();
    let p = config.platform;
    assert_eq!(p.connect_timeout.as_duration(), Duration::from_millis(250));
    assert_eq!(
        p.live_publish_timeout.as_duration(),
        Duration::from_millis(10)
    );
    assert_eq!(
        p.outbound_duplicate_window.as_duration(),
        Duration::from_millis(1500)
    );
    assert_eq!(
        p.stream_setup_timeout.as_duration(),
        Duration::from_millis(100)
    );
    assert_eq!(
        p.stream_setup_max_delay.as_duration(),
        Duration::from_millis(200)
    );
    assert_eq!(
        p.db_write_retry_max_delay.as_duration(),
        Duration::from_millis(30)
    );
    assert_eq!(
        p.shutdown_flush_timeout.as_duration(),
        Duration::from_millis(400)
    );
    let plugins = config.plugins;
    assert_eq!(
        plugins.admin_timeout.as_duration(),
        Duration::from_millis(500)
    );
    assert_eq!(
        plugins.max_request_timeout.as_duration(),
        Duration::from_millis(750)
    );
    // Zero is allowed here: exit does not wait for threads stuck in plugin code.
    assert!(plugins.shutdown_timeout.as_duration().is_zero());
}

#[test]
fn zero_durations_that_would_break_a_process_are_rejected() {
    for key in [
        "connect_timeout",
        "live_publish_timeout",
        "outbound_duplicate_window",
        "outbound_retry_pause",
        "stream_setup_timeout",
        "stream_setup_max_delay",
        "db_write_retry_max_delay",
        "shutdown_flush_timeout",
    ] {
        assert_rejects(
            &format!(r#"{{"platform": {{"{key}": 0}}}}"#),
            &format!("platform.{key}"),
            "must be greater than 0",
        );
    }
    for key in ["admin_timeout", "max_request_timeout"] {
        assert_rejects(
            &format!(r#"{{"plugins": {{"{key}": 0}}}}"#),
            &format!("plugins.{key}"),
            "must be greater than 0",
        );
    }
}

#[test]
fn wrong_types_and_negative_values_are_rejected() {
    assert_rejects(
        r#"{"platform": {"connect_timeout": "20s"}}"#,
        "platform.connect_timeout",
        "invalid type: string \"20s\"",
    );
    assert_rejects(
        r#"{"platform": {"outbound_retry_pause": -1}}"#,
        "platform.outbound_retry_pause",
        "expected a non-negative number of seconds",
    );
    assert_rejects(
        r#"{"plugins": {"shutdown_timeout": -1}}"#,
        "plugins.shutdown_timeout",
        "expected a non-negative number of seconds",
    );
    assert_rejects(
        r#"{"plugins": {"admin_timeout": null}}"#,
        "plugins.admin_timeout",
        "invalid type: null",
    );
}
