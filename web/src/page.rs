//! The one live page: the view of the state for one channel, rendered by minijinja with HTML
//! auto-escaping, whole or one section (or one chat line) at a time for the live updates.

use crate::state::{Line, Live, Section};
use minijinja::Environment;
use rosey_plugin_api::Timestamp;
use serde::Serialize;
use std::sync::OnceLock;

const TEMPLATES: [(&str, &str); 10] = [
    ("index.html", include_str!("../templates/index.html")),
    ("bot.html", include_str!("../templates/bot.html")),
    ("users.html", include_str!("../templates/users.html")),
    ("chat.html", include_str!("../templates/chat.html")),
    ("line.html", include_str!("../templates/line.html")),
    ("stats.html", include_str!("../templates/stats.html")),
    ("outbound.html", include_str!("../templates/outbound.html")),
    ("plugins.html", include_str!("../templates/plugins.html")),
    ("services.html", include_str!("../templates/services.html")),
    ("health.html", include_str!("../templates/health.html")),
];

/// The templates, parsed once. Names end in `.html`, so minijinja escapes every value.
fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                // The templates are compiled in; a broken one is caught by the unit tests.
                tracing::error!(name, error = %e, "bad template");
            }
        }
        env
    })
}

/// A rendering failure (a template bug, never input).
#[derive(Debug, thiserror::Error)]
#[error("cannot render {0}: {1}")]
pub struct RenderError(&'static str, String);

fn render(name: &'static str, ctx: &impl Serialize) -> Result<String, RenderError> {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| RenderError(name, format!("{e:#}")))
}

/// A time as `HH:MM:SS` (UTC) and RFC 3339.
fn clock(secs: i64) -> (String, String) {
    let iso = Timestamp::from_secs(secs)
        .map(|t| t.rfc3339())
        .unwrap_or_default();
    (iso.get(11..19).unwrap_or("").to_owned(), iso)
}

#[derive(Serialize)]
struct LineView<'a> {
    time: String,
    iso: String,
    username: &'a str,
    message: &'a str,
    own: bool,
}

fn line_view(l: &Line) -> LineView<'_> {
    let (time, iso) = clock(l.timestamp);
    LineView {
        time,
        iso,
        username: &l.username,
        message: &l.message,
        own: l.own,
    }
}

#[derive(Serialize)]
struct BotView {
    bot_name: String,
    channel: String,
    platform: String,
    bot_rank: f64,
    connected: bool,
    since: Option<String>,
    chat_count: u64,
    connected_count: Option<u64>,
    playlist_len: usize,
    media: Option<String>,
}

#[derive(Serialize)]
struct UserView {
    name: String,
    rank: f64,
    rank_class: u8,
    afk: bool,
}

#[derive(Serialize)]
struct ChannelLink {
    name: String,
    href: String,
}

#[derive(Serialize)]
struct ServiceView {
    name: String,
    version: String,
    id: String,
    #[serde(rename = "where")]
    place: String,
    requests: u64,
    errors: u64,
}

/// Everything the templates read, for one channel.
#[derive(Serialize)]
pub struct PageContext<'a> {
    channel: &'a str,
    channels: Vec<ChannelLink>,
    admin: bool,
    csrf: &'a str,
    version: &'static str,
    bot: Option<BotView>,
    users: Vec<UserView>,
    chat: Vec<LineView<'a>>,
    peak_chat: String,
    peak_connected: String,
    users_seen: String,
    top: Vec<rosey_plugin_api::db::TopChatter>,
    chart_version: i64,
    chart_channel: String,
    outbound: &'a [rosey_plugin_api::db::OutboundReportRow],
    plugins: Vec<&'a rosey_plugin_api::admin::PluginInfo>,
    runtime_up: bool,
    services: Vec<ServiceView>,
    db: &'a crate::state::DbHealth,
    nats: bool,
    /// What `/health` would name, for every channel: the banner at the top and the tab title.
    problems: Vec<String>,
}

/// Percent-encodes a query value (channel names are free text).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The context for `channel` ("" when none is known).
pub fn context<'a>(
    live: &'a Live,
    channel: &'a str,
    admin: bool,
    csrf: &'a str,
) -> PageContext<'a> {
    let view = live.channels.get(channel);
    let bot = view.and_then(|v| v.bot.as_ref());
    let mut users: Vec<UserView> = bot
        .map(|b| {
            b.users
                .iter()
                .map(|u| UserView {
                    name: u.username.clone(),
                    rank: u.rank,
                    rank_class: u.rank.clamp(0.0, 3.0) as u8,
                    afk: u.is_afk,
                })
                .collect()
        })
        .unwrap_or_default();
    users.sort_by(|a, b| {
        b.rank
            .total_cmp(&a.rank)
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
    });
    let stats = view.and_then(|v| v.stats.as_ref());
    PageContext {
        channel,
        channels: live
            .channels
            .keys()
            .map(|c| ChannelLink {
                href: format!("/?channel={}", query_escape(c)),
                name: c.clone(),
            })
            .collect(),
        admin,
        csrf,
        version: env!("CARGO_PKG_VERSION"),
        bot: bot.map(|b| BotView {
            bot_name: b.bot_name.clone(),
            channel: b.channel.clone(),
            platform: b.platform.clone(),
            bot_rank: b.bot_rank,
            connected: b.connected,
            since: b.connected_since.map(|s| {
                let (t, iso) = clock(s);
                format!("{} {t} UTC", iso.get(..10).unwrap_or(""))
            }),
            chat_count: b.chat_count,
            connected_count: b.connected_count,
            playlist_len: b.playlist.len(),
            media: b.media.as_ref().map(|m| m.title.clone()),
        }),
        users,
        chat: view
            .map(|v| v.chat.iter().map(line_view).collect())
            .unwrap_or_default(),
        peak_chat: stats
            .map(|s| s.high_water_mark.users.to_string())
            .unwrap_or_else(|| "–".into()),
        peak_connected: stats
            .map(|s| s.high_water_connected.users.to_string())
            .unwrap_or_else(|| "–".into()),
        users_seen: stats
            .map(|s| s.total_users_seen.to_string())
            .unwrap_or_else(|| "–".into()),
        top: stats.map(|s| s.top_chatters.clone()).unwrap_or_default(),
        chart_channel: query_escape(channel),
        chart_version: view
            .and_then(|v| v.history.last())
            .map(|s| s.timestamp)
            .unwrap_or(0),
        outbound: view.map(|v| v.outbound.as_slice()).unwrap_or_default(),
        plugins: live.plugins.values().collect(),
        runtime_up: live.runtime_reachable,
        services: live
            .services
            .iter()
            .map(|s| ServiceView {
                name: s.name.clone(),
                version: s.version.clone(),
                id: s.id.clone(),
                place: match (s.metadata.get("platform"), s.metadata.get("channel")) {
                    (Some(p), Some(c)) => format!("{p} / {c}"),
                    _ => String::new(),
                },
                requests: s.requests,
                errors: s.errors,
            })
            .collect(),
        db: &live.db,
        nats: live.nats_connected,
        problems: crate::http::health_problems(live),
    }
}

/// The whole page.
pub fn page(ctx: &PageContext<'_>) -> Result<String, RenderError> {
    render("index.html", ctx)
}

/// One section's inner HTML.
pub fn section(ctx: &PageContext<'_>, section: Section) -> Result<String, RenderError> {
    let name = match section {
        Section::Bot => "bot.html",
        Section::Users => "users.html",
        Section::Outbound => "outbound.html",
        Section::Plugins => "plugins.html",
        Section::Services => "services.html",
        Section::Stats => "stats.html",
        Section::Chat => "chat.html",
        Section::Health => "health.html",
    };
    render(name, ctx)
}

/// One chat line as a list item.
pub fn line(l: &Line) -> Result<String, RenderError> {
    #[derive(Serialize)]
    struct Ctx<'a> {
        l: LineView<'a>,
    }
    render("line.html", &Ctx { l: line_view(l) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Live;

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let evil = "<img src=x onerror=alert(1)>";
        let mut live = Live::default();
        live.push_line(
            evil,
            Line {
                timestamp: 1_700_000_000,
                username: evil.into(),
                message: evil.into(),
                own: false,
            },
            10,
        );
        let ctx = context(&live, evil, true, "csrf\"x");
        let html = page(&ctx).unwrap();
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!html.contains("csrf\"x"));
        let li = line(&live.channels[evil].chat[0]).unwrap();
        assert!(li.starts_with("<li") && !li.contains("<img"));
        for s in Section::ALL {
            section(&ctx, s).unwrap();
        }
    }

    #[test]
    fn templates_parse() {
        for (name, source) in TEMPLATES {
            let mut env = Environment::new();
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_escape("a b&c\"<"), "a%20b%26c%22%3C");
    }
}
