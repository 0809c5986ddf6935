//! The bot's limits (`platform.max_users`, `max_frame_bytes`, `max_line_bytes`,
//! `db_write_backlog`): their
//! defaults, values read from the file, and values outside their bounds rejected with the key.

mod common;

use common::{assert_rejects, load};
use rosey_config::Config;

#[test]
fn defaults_are_far_above_real_channels_and_lines() {
    let p = Config::default().platform;
    assert_eq!(p.max_users, 10_000);
    assert_eq!(p.max_frame_bytes, 8 << 20);
    assert_eq!(p.max_line_bytes, 64 << 10);
    assert_eq!(p.db_write_backlog, 100_000);
    let loaded = load(
        r#"{"platform": {"max_users": 60000, "max_frame_bytes": 16777216, "max_line_bytes": 2048}}"#,
    )
    .unwrap()
    .platform;
    assert_eq!(
        (
            loaded.max_users,
            loaded.max_frame_bytes,
            loaded.max_line_bytes
        ),
        (60_000, 16 << 20, 2048)
    );
}

#[test]
fn values_outside_the_bounds_are_rejected() {
    for (json, key, message) in [
        (r#"{"max_users": 1}"#, "max_users", "must be between 2 and"),
        (
            r#"{"max_users": 2000000}"#,
            "max_users",
            "must be between 2 and",
        ),
        (
            r#"{"max_frame_bytes": 1000}"#,
            "max_frame_bytes",
            "must be between",
        ),
        (
            r#"{"max_frame_bytes": 1073741824}"#,
            "max_frame_bytes",
            "must be between",
        ),
        (
            r#"{"max_line_bytes": 10}"#,
            "max_line_bytes",
            "must be between",
        ),
        (
            r#"{"max_line_bytes": 1048576}"#,
            "max_line_bytes",
            "must be between",
        ),
        (
            r#"{"max_frame_bytes": 65536, "max_line_bytes": 131072}"#,
            "max_line_bytes",
            "must not exceed platform.max_frame_bytes",
        ),
        (r#"{"max_users": -1}"#, "max_users", "invalid value"),
        (
            r#"{"db_write_backlog": 9}"#,
            "db_write_backlog",
            "must be between 10 and",
        ),
        (
            r#"{"db_write_backlog": 20000000}"#,
            "db_write_backlog",
            "must be between 10 and",
        ),
    ] {
        assert_rejects(
            &format!(r#"{{"platform": {json}}}"#),
            &format!("platform.{key}"),
            message,
        );
    }
}
