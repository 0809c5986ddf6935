//! `/metrics` in the Prometheus text format: the original exporter's metric names (per channel
//! where the original had one bot) plus per-service and per-plugin figures, all from the state
//! kept by [`crate::follow`].

use crate::state::Live;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// HTTP request counters of rosey-web itself (the original's `rosey_requests_total` and
/// `rosey_errors_total` counted its web server's requests).
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Requests answered with a 5xx status.
    pub errors: AtomicU64,
}

/// A label value escaped as the text format requires (backslash, quote, newline).
pub fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition.
pub fn render(live: &Live, http: &HttpCounters, now: i64) -> String {
    let mut out = String::with_capacity(4096);
    let bots: Vec<_> = live
        .channels
        .iter()
        .map(|(channel, view)| {
            let platform = view
                .bot
                .as_ref()
                .map(|b| b.platform.clone())
                .unwrap_or_default();
            let up = live
                .services
                .iter()
                .any(|s| s.name == "rosey-bot" && s.metadata.get("channel") == Some(channel));
            (
                format!(
                    "channel=\"{}\",platform=\"{}\"",
                    label(channel),
                    label(&platform)
                ),
                view,
                up,
            )
        })
        .collect();

    family(
        &mut out,
        "rosey_bot_up",
        "gauge",
        "Whether the channel's bot process answers (1) or not (0).",
    );
    for (labels, _, up) in &bots {
        let _ = writeln!(out, "rosey_bot_up{{{labels}}} {}", u8::from(*up));
    }
    family(
        &mut out,
        "rosey_bot_connected",
        "gauge",
        "Whether the bot is in its channel.",
    );
    for (labels, view, up) in &bots {
        let connected = *up && view.bot.as_ref().is_some_and(|b| b.connected);
        let _ = writeln!(
            out,
            "rosey_bot_connected{{{labels}}} {}",
            u8::from(connected)
        );
    }
    family(
        &mut out,
        "rosey_bot_uptime_seconds",
        "gauge",
        "Seconds since the bot process started.",
    );
    for (labels, view, _) in &bots {
        if let Some(bot) = &view.bot {
            let _ = writeln!(
                out,
                "rosey_bot_uptime_seconds{{{labels}}} {}",
                (now - bot.started_at).max(0)
            );
        }
    }
    family(
        &mut out,
        "rosey_channel_users",
        "gauge",
        "Users in the channel's chat.",
    );
    for (labels, view, _) in &bots {
        if let Some(bot) = &view.bot {
            let _ = writeln!(out, "rosey_channel_users{{{labels}}} {}", bot.chat_count);
        }
    }
    family(
        &mut out,
        "rosey_channel_connected_users",
        "gauge",
        "Connections to the channel, guests included.",
    );
    for (labels, view, _) in &bots {
        if let Some(count) = view.bot.as_ref().and_then(|b| b.connected_count) {
            let _ = writeln!(out, "rosey_channel_connected_users{{{labels}}} {count}");
        }
    }
    let requests = http.requests.load(Ordering::Relaxed);
    let errors = http.errors.load(Ordering::Relaxed);
    family(
        &mut out,
        "rosey_requests_total",
        "counter",
        "HTTP requests rosey-web answered.",
    );
    let _ = writeln!(out, "rosey_requests_total {requests}");
    family(
        &mut out,
        "rosey_errors_total",
        "counter",
        "HTTP requests rosey-web answered with a server error.",
    );
    let _ = writeln!(out, "rosey_errors_total {errors}");
    family(
        &mut out,
        "rosey_error_rate_percent",
        "gauge",
        "rosey_errors_total as a percentage of rosey_requests_total.",
    );
    let rate = if requests == 0 {
        0.0
    } else {
        errors as f64 * 100.0 / requests as f64
    };
    let _ = writeln!(out, "rosey_error_rate_percent {rate:.3}");

    family(
        &mut out,
        "rosey_nats_connected",
        "gauge",
        "Whether rosey-web is connected to NATS.",
    );
    let _ = writeln!(
        out,
        "rosey_nats_connected {}",
        u8::from(live.nats_connected)
    );
    family(
        &mut out,
        "rosey_db_up",
        "gauge",
        "Whether rosey-db answered rosey-web's last request.",
    );
    let _ = writeln!(out, "rosey_db_up {}", u8::from(live.db.reachable));
    if let Some(backlog) = live.db.backlog {
        family(
            &mut out,
            "rosey_db_backlog",
            "gauge",
            "Durable writes waiting for rosey-db.",
        );
        let _ = writeln!(out, "rosey_db_backlog {backlog}");
    }
    if let Some(dead) = live.db.dead_letters {
        family(
            &mut out,
            "rosey_db_dead_letters",
            "gauge",
            "Writes rosey-db could not apply.",
        );
        let _ = writeln!(out, "rosey_db_dead_letters {dead}");
    }

    family(
        &mut out,
        "rosey_service_up",
        "gauge",
        "A Rosey process answering $SRV discovery.",
    );
    for s in &live.services {
        let _ = writeln!(
            out,
            "rosey_service_up{{service=\"{}\",id=\"{}\",version=\"{}\"}} 1",
            label(&s.name),
            label(&s.id),
            label(&s.version)
        );
    }
    family(
        &mut out,
        "rosey_service_requests_total",
        "counter",
        "Requests a service answered, from its $SRV.STATS.",
    );
    for s in &live.services {
        let _ = writeln!(
            out,
            "rosey_service_requests_total{{service=\"{}\",id=\"{}\"}} {}",
            label(&s.name),
            label(&s.id),
            s.requests
        );
    }
    family(
        &mut out,
        "rosey_service_errors_total",
        "counter",
        "Errors a service answered, from its $SRV.STATS.",
    );
    for s in &live.services {
        let _ = writeln!(
            out,
            "rosey_service_errors_total{{service=\"{}\",id=\"{}\"}} {}",
            label(&s.name),
            label(&s.id),
            s.errors
        );
    }

    family(
        &mut out,
        "rosey_plugin_running",
        "gauge",
        "Whether a plugin is running (1) or not (0).",
    );
    for p in live.plugins.values() {
        let running = matches!(p.state, rosey_plugin_api::admin::PluginState::Running);
        let _ = writeln!(
            out,
            "rosey_plugin_running{{plugin=\"{}\"}} {}",
            label(&p.name),
            u8::from(running)
        );
    }
    family(
        &mut out,
        "rosey_plugin_generation",
        "gauge",
        "The plugin's loaded generation.",
    );
    for p in live.plugins.values() {
        let _ = writeln!(
            out,
            "rosey_plugin_generation{{plugin=\"{}\"}} {}",
            label(&p.name),
            p.generation
        );
    }
    family(
        &mut out,
        "rosey_plugin_messages_total",
        "counter",
        "Messages a plugin handled.",
    );
    for p in live.plugins.values() {
        let _ = writeln!(
            out,
            "rosey_plugin_messages_total{{plugin=\"{}\"}} {}",
            label(&p.name),
            p.messages
        );
    }
    family(
        &mut out,
        "rosey_plugin_errors_total",
        "counter",
        "Errors a plugin reported.",
    );
    for p in live.plugins.values() {
        let _ = writeln!(
            out,
            "rosey_plugin_errors_total{{plugin=\"{}\"}} {}",
            label(&p.name),
            p.errors
        );
    }
    family(
        &mut out,
        "rosey_plugin_reloads_total",
        "counter",
        "Times a plugin was reloaded.",
    );
    for p in live.plugins.values() {
        let _ = writeln!(
            out,
            "rosey_plugin_reloads_total{{plugin=\"{}\"}} {}",
            label(&p.name),
            p.reloads
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn empty_state_still_has_the_original_names() {
        let out = render(&Live::default(), &HttpCounters::default(), 0);
        for name in [
            "rosey_bot_up",
            "rosey_requests_total",
            "rosey_errors_total",
            "rosey_error_rate_percent",
        ] {
            assert!(out.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
