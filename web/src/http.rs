//! The HTTP side: the page, the live feed, the chart, the original's API routes, `/metrics` and
//! `/health`, with the access rules of [`crate::auth`] and security headers on every answer.
// The helpers' `Err` is the finished early answer a handler returns as is; boxing it would only
// add an allocation to every refusal.
#![allow(clippy::result_large_err)]

use crate::auth::{Access, Refusal};
use crate::chart::{self, Range};
use crate::follow::{Figures, Follower};
use crate::metrics::{self, HttpCounters};
use crate::page;
use crate::state::{Change, Live, Section};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rosey_plugin_api::admin::PluginName;
use rosey_plugin_api::db::{
    self as wire, ChannelStats, ChannelStatsQuery, OutboundReportRow, TokenCreated, TokenListReply,
    TokenVerdict, TokensRevoked, UserCountSample, UserStats,
};
use rosey_plugin_api::reply::RequestError;
use rosey_plugin_api::{subjects, ErrorCode, Timestamp};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

/// The largest request body accepted (an `/api/say` line is far smaller).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The history route's cap, as the original's.
pub const MAX_HISTORY_HOURS: u32 = 168;
/// The Content-Security-Policy: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What the handlers share.
pub struct App {
    /// The state and the NATS side.
    pub follower: Follower,
    /// Access rules.
    pub access: Access,
    /// Request counters for `/metrics`.
    pub counters: HttpCounters,
    /// `/api/say` per token.
    pub say_limiter: DefaultKeyedRateLimiter<String>,
    /// `web.say_max_chars`.
    pub say_max_chars: usize,
    /// Ends the live feeds at shutdown.
    pub stopping: watch::Receiver<bool>,
    /// The last `/api/current` body: it changes only with the state (or the second that bounds
    /// its chat window), and encoding 300 lines per request was most of its cost.
    current_cache: std::sync::Mutex<Option<CurrentBody>>,
}

/// One encoded `/api/current` answer and what it was built from.
struct CurrentBody {
    revision: u64,
    channel: Option<String>,
    second: i64,
    body: Bytes,
}

impl App {
    /// The shared parts, from the configuration.
    pub fn new(
        follower: Follower,
        access: Access,
        say_per_minute: u32,
        say_max_chars: usize,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        let per_minute = NonZeroU32::new(say_per_minute).unwrap_or(NonZeroU32::MIN);
        App {
            follower,
            access,
            counters: HttpCounters::default(),
            say_limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            say_max_chars,
            stopping,
            current_cache: std::sync::Mutex::new(None),
        }
    }

    fn live(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        self.follower.shared.read()
    }
}

type Shared = State<Arc<App>>;

/// A JSON error in the original's shape: `{"error": "..."}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn refusal(r: Refusal) -> Response {
    let mut resp = error(r.status, r.message);
    if r.challenge {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, Refusal::challenge_header());
    }
    resp
}

/// A failed request to another service, as an HTTP answer.
fn upstream(e: RequestError) -> Response {
    match e {
        RequestError::Service(body, _) => {
            let status = match body.error.code {
                ErrorCode::InvalidJson | ErrorCode::MissingField => StatusCode::BAD_REQUEST,
                ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::NotFound => StatusCode::NOT_FOUND,
                ErrorCode::Denied => StatusCode::FORBIDDEN,
                ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_GATEWAY,
            };
            error(status, body.error.message)
        }
        RequestError::Timeout { subject, .. } => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "{} did not answer in time ({subject})",
                service_of(&subject)
            ),
        ),
        other => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot reach the service: {other}"),
        ),
    }
}

fn service_of(subject: &str) -> &'static str {
    if subject.starts_with("rosey.db.") {
        "rosey-db"
    } else if subject.starts_with("rosey.runtime.") {
        "rosey-runtime"
    } else if subject.starts_with("rosey.bot.") {
        "the bot"
    } else {
        "a service"
    }
}

/// The channel a request is about: the named one, or the only one; with several and none
/// named, 400 listing them.
fn pick_channel(live: &Live, named: Option<&str>) -> Result<Option<String>, Response> {
    let known: Vec<&String> = live.channels.keys().collect();
    match named {
        Some(c) if !known.is_empty() && !known.iter().any(|k| *k == c) => Err(error(
            StatusCode::NOT_FOUND,
            format!("unknown channel {c:?}; served: {known:?}"),
        )),
        Some(c) => Ok(Some(c.to_owned())),
        None if known.len() > 1 => Err(error(
            StatusCode::BAD_REQUEST,
            format!("several channels are served; name one with ?channel=: {known:?}"),
        )),
        None => Ok(known.first().map(|c| (*c).clone())),
    }
}

/// A read route's gate: the caller may read, and the channel it asks for (see [`pick_channel`]).
fn readable_channel(
    app: &App,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Option<String>, Response> {
    app.access.may_read(headers).map_err(refusal)?;
    pick_channel(&app.live(), q.get("channel").map(String::as_str))
}

/// Counts requests and adds the security headers to every answer.
async fn around(State(app): Shared, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    if resp.status().is_server_error() {
        app.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route("/static/style.css", get(style))
        .route("/static/app.js", get(script))
        .route("/static/icon.svg", get(icon))
        .route("/events", get(events))
        .route("/chart.svg", get(chart_svg))
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .route("/api/stats", get(api_stats))
        .route("/api/history/{hours}", get(api_history))
        .route("/api/user/{username}", get(api_user))
        .route("/api/current", get(api_current))
        .route("/api/outbound/recent", get(api_outbound))
        .route("/api/say", post(api_say))
        .route("/api/tokens", get(api_tokens_list).post(api_tokens_create))
        .route("/api/tokens/{prefix}", delete(api_tokens_revoke))
        .route("/api/plugins", get(api_plugins))
        .route("/api/plugins/{name}/{action}", post(api_plugin_action))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(app.clone(), around))
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(app)
}

type Params = Query<HashMap<String, String>>;

async fn index(State(app): Shared, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(r) = app.access.may_read(&headers) {
        return refusal(r);
    }
    let admin = app.access.is_admin(&headers);
    let channel = {
        let live = app.live();
        match q.get("channel") {
            Some(c) if live.channels.contains_key(c) => c.clone(),
            Some(c) => return error(StatusCode::NOT_FOUND, format!("unknown channel {c:?}")),
            None => live.channels.keys().next().cloned().unwrap_or_default(),
        }
    };
    if !channel.is_empty() {
        app.follower
            .fresh(&channel, &[Figures::Outbound, Figures::Stats])
            .await;
    }
    let live = app.live();
    let ctx = page::context(&live, &channel, admin, &app.access.csrf);
    match page::page(&ctx) {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn login(State(app): Shared, headers: HeaderMap) -> Response {
    if app.access.password.is_none() {
        return error(
            StatusCode::FORBIDDEN,
            "no admin credential is configured (web.password)",
        );
    }
    if app.access.is_admin(&headers) {
        return Redirect::to("/").into_response();
    }
    refusal(Refusal {
        status: StatusCode::UNAUTHORIZED,
        message: "log in as admin".into(),
        challenge: true,
    })
}

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#c0265e"/><circle cx="8" cy="8" r="3" fill="#fff"/></svg>"##,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../static/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../static/app.js"),
    )
        .into_response()
}

fn section_event(app: &App, channel: &str, admin: bool, section: Section) -> Option<SseEvent> {
    let live = app.live();
    let ctx = page::context(&live, channel, admin, &app.access.csrf);
    let html = page::section(&ctx, section).ok()?;
    let data = json!({"id": section.id(), "html": html}).to_string();
    Some(SseEvent::default().event("section").data(data))
}

fn state_event(app: &App) -> SseEvent {
    let live = app.live();
    SseEvent::default()
        .event("state")
        .data(json!({"nats": live.nats_connected, "db": live.db.reachable}).to_string())
}

async fn events(State(app): Shared, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(r) = app.access.may_read(&headers) {
        return refusal(r);
    }
    let admin = app.access.is_admin(&headers);
    let channel = q.get("channel").cloned().unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(256);
    let mut changes = app.follower.shared.subscribe();
    let mut stopping = app.stopping.clone();
    let keep = app.follower.chat_lines;
    let feed = app.clone();
    // An open page keeps its channel's figures from rosey-db current.
    let watching = (!channel.is_empty()).then(|| app.follower.watch(&channel));
    tokio::spawn(async move {
        let _watching = watching;
        if tx.send(state_event(&feed)).await.is_err() {
            return;
        }
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                _ = stopping.changed() => return,
            };
            let events: Vec<SseEvent> = match change {
                Ok(Change::Chat(c, line)) if c == channel || channel.is_empty() => {
                    match page::line(&line) {
                        Ok(html) => vec![SseEvent::default()
                            .event("chat")
                            .data(json!({"html": html, "keep": keep}).to_string())],
                        Err(_) => vec![],
                    }
                }
                Ok(Change::Chat(..)) => vec![],
                Ok(Change::Section(s)) => {
                    let mut out: Vec<SseEvent> = section_event(&feed, &channel, admin, s)
                        .into_iter()
                        .collect();
                    if s == Section::Services {
                        out.push(state_event(&feed));
                    }
                    // What needs attention follows the bots and the services.
                    if matches!(s, Section::Bot | Section::Services) {
                        out.extend(section_event(&feed, &channel, admin, Section::Health));
                    }
                    out
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Section::ALL
                    .iter()
                    .filter_map(|s| section_event(&feed, &channel, admin, *s))
                    .collect(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            for e in events {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn chart_svg(State(app): Shared, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(r) = app.access.may_read(&headers) {
        return refusal(r);
    }
    let Some(range) = Range::parse(q.get("range").map(String::as_str)) else {
        return error(StatusCode::BAD_REQUEST, "range must be 24h or 7d");
    };
    let channel = match pick_channel(&app.live(), q.get("channel").map(String::as_str)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(c) = &channel {
        app.follower.fresh(c, &[Figures::Stats]).await;
    }
    let svg = {
        let live = app.live();
        let history = channel
            .as_deref()
            .and_then(|c| live.channels.get(c))
            .map(|v| v.history.as_slice())
            .unwrap_or_default();
        chart::svg(history, range, Timestamp::now().secs())
    };
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response()
}

async fn metrics_text(State(app): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = app.access.may_read(&headers) {
        return refusal(r);
    }
    let text = metrics::render(&app.live(), &app.counters, Timestamp::now().secs());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Why the system is not healthy, empty when it is.
pub fn health_problems(live: &Live) -> Vec<String> {
    let mut problems = Vec::new();
    if !live.nats_connected {
        problems.push("rosey-web is not connected to NATS".to_owned());
    }
    if !live.db.reachable {
        problems.push(match &live.db.problem {
            Some(p) => format!("rosey-db does not answer: {p}"),
            None => "rosey-db does not answer".to_owned(),
        });
    }
    if live.channels.is_empty() {
        problems.push("no bot has answered".to_owned());
    }
    for (channel, view) in &live.channels {
        let process = live
            .services
            .iter()
            .any(|s| s.name == "rosey-bot" && s.metadata.get("channel") == Some(channel));
        if !process {
            problems.push(format!("the bot for {channel} does not answer"));
        } else if !view.bot.as_ref().is_some_and(|b| b.connected) {
            problems.push(format!("the bot for {channel} is not connected"));
        }
    }
    problems
}

async fn health(State(app): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = app.access.may_read(&headers) {
        return refusal(r);
    }
    let problems = health_problems(&app.live());
    if problems.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "problems": problems})),
        )
            .into_response()
    }
}

async fn api_stats(State(app): Shared, headers: HeaderMap, Query(q): Params) -> Response {
    let channel = match readable_channel(&app, &headers, &q) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Some(c) = &channel {
        app.follower.fresh(c, &[Figures::Stats]).await;
    }
    let cached = channel
        .as_deref()
        .and_then(|c| app.live().channels.get(c).and_then(|v| v.stats.clone()));
    match cached {
        Some(stats) => Json(stats).into_response(),
        None => match app
            .follower
            .ask_db::<_, ChannelStats>(
                subjects::db::QUERY_CHANNEL_STATS,
                &ChannelStatsQuery { channel },
            )
            .await
        {
            Ok(stats) => Json(stats).into_response(),
            Err(e) => upstream(e),
        },
    }
}

async fn api_history(
    State(app): Shared,
    headers: HeaderMap,
    Path(hours): Path<String>,
    Query(q): Params,
) -> Response {
    let channel = match readable_channel(&app, &headers, &q) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(hours) = hours.parse::<u32>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("hours must be a whole number, not {hours:?}"),
        );
    };
    let hours = hours.min(MAX_HISTORY_HOURS);
    if let Some(c) = &channel {
        app.follower.fresh(c, &[Figures::Stats]).await;
    }
    let since = Timestamp::now().secs() - i64::from(hours) * 3600;
    let cached: Option<Vec<_>> = channel.as_deref().and_then(|c| {
        app.live()
            .channels
            .get(c)
            .filter(|v| !v.history.is_empty())
            .map(|v| {
                v.history
                    .iter()
                    .filter(|s| s.timestamp >= since)
                    .copied()
                    .collect()
            })
    });
    if let Some(rows) = cached {
        return Json(rows).into_response();
    }
    let req = wire::UserCountHistoryGet { channel, hours };
    match app
        .follower
        .ask_db::<_, Vec<UserCountSample>>(subjects::db::USER_COUNT_HISTORY_GET, &req)
        .await
    {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => upstream(e),
    }
}

async fn api_user(
    State(app): Shared,
    headers: HeaderMap,
    Path(username): Path<String>,
    Query(q): Params,
) -> Response {
    let channel = match readable_channel(&app, &headers, &q) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if username.is_empty() || username.len() > 256 {
        return error(StatusCode::BAD_REQUEST, "username must be 1 to 256 bytes");
    }
    let q = json!({"username": username, "channel": channel});
    match app
        .follower
        .ask_db::<_, UserStats>(subjects::db::QUERY_USER_STATS, &q)
        .await
    {
        Ok(stats) if stats.found => Json(stats).into_response(),
        Ok(_) => error(StatusCode::NOT_FOUND, "user not found"),
        Err(e) => upstream(e),
    }
}

/// `/api/current`: the status (as the original's `current_status` row) plus 20 minutes of chat,
/// from the state, never from the database.
pub fn current(live: &Live, channel: Option<&str>, now: i64) -> Value {
    let view = channel.and_then(|c| live.channels.get(c));
    let bot = view.and_then(|v| v.bot.as_ref());
    let since = now - 20 * 60;
    let chat: Vec<Value> = view
        .map(|v| {
            v.chat
                .iter()
                .filter(|l| l.timestamp >= since)
                .map(|l| json!({"timestamp": l.timestamp, "username": l.username, "message": l.message}))
                .collect()
        })
        .unwrap_or_default();
    let status = bot.map(|b| {
        let own = b.users.iter().find(|u| u.username == b.bot_name);
        json!({
            "bot_name": b.bot_name,
            "bot_rank": b.bot_rank,
            "bot_afk": own.is_some_and(|u| u.is_afk),
            "channel_name": b.channel,
            "current_chat_users": b.chat_count,
            "current_connected_users": b.connected_count.unwrap_or(0),
            "playlist_items": b.playlist.len(),
            "current_media_title": b.media.as_ref().map(|m| m.title.clone()),
            "current_media_duration": b.media.as_ref().map(|m| m.duration_s as i64),
            "bot_start_time": b.started_at,
            "bot_connected": b.connected,
            "last_updated": view.map(|v| v.last_heard),
        })
    });
    json!({
        "status": status,
        "recent_chat": chat,
        "users": bot.map(|b| b.users.clone()).unwrap_or_default(),
    })
}

async fn api_current(State(app): Shared, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(r) = app.access.may_read(&headers) {
        return refusal(r);
    }
    let body = {
        let live = app.live();
        // Read under the guard: it names the state the guard shows.
        let revision = app.follower.shared.revision();
        let channel = match pick_channel(&live, q.get("channel").map(String::as_str)) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let second = Timestamp::now().secs();
        let mut cache = app.current_cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.as_ref() {
            Some(c) if c.revision == revision && c.second == second && c.channel == channel => {
                c.body.clone()
            }
            _ => {
                let value = current(&live, channel.as_deref(), second);
                let body = match serde_json::to_vec(&value) {
                    Ok(bytes) => Bytes::from(bytes),
                    Err(e) => {
                        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}"))
                    }
                };
                *cache = Some(CurrentBody {
                    revision,
                    channel,
                    second,
                    body: body.clone(),
                });
                body
            }
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

async fn api_outbound(State(app): Shared, headers: HeaderMap, Query(q): Params) -> Response {
    let channel = match readable_channel(&app, &headers, &q) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let limit = match q.get("limit").map(|l| l.parse::<u32>()) {
        None => 20,
        Some(Ok(n)) if (1..=500).contains(&n) => n,
        Some(_) => return error(StatusCode::BAD_REQUEST, "limit must be 1 to 500"),
    };
    let req = wire::OutboundRecent { limit, channel };
    match app
        .follower
        .ask_db::<_, Vec<OutboundReportRow>>(subjects::db::OUTBOUND_RECENT, &req)
        .await
    {
        Ok(rows) => Json(json!({"messages": rows})).into_response(),
        Err(e) => upstream(e),
    }
}

/// Checks an `/api/say` message: not blank, not too long, no control characters.
pub fn check_message(message: &str, max_chars: usize) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err("message must not be empty".into());
    }
    let chars = message.chars().count();
    if chars > max_chars {
        return Err(format!(
            "message is {chars} characters; the limit is {max_chars}"
        ));
    }
    if let Some(c) = message.chars().find(|c| c.is_control()) {
        return Err(format!(
            "message contains a control character (U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(())
}

fn parse_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, Response> {
    if body.is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )),
    }
}

async fn api_say(
    State(app): Shared,
    headers: HeaderMap,
    Query(q): Params,
    body: Bytes,
) -> Response {
    let Some(token) = headers
        .get("x-api-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    else {
        return error(StatusCode::UNAUTHORIZED, "missing X-API-Token header");
    };
    let map = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let named = match map.get("channel") {
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => return error(StatusCode::BAD_REQUEST, "channel must be a string"),
        None => q.get("channel").cloned(),
    };
    let channel = match pick_channel(&app.live(), named.as_deref()) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let verify = wire::TokenVerify {
        token: token.to_owned(),
        channel: channel.clone(),
    };
    let verdict = match app
        .follower
        .ask_db::<_, TokenVerdict>(subjects::db::TOKENS_VERIFY, &verify)
        .await
    {
        Ok(v) => v,
        Err(e) => return upstream(e),
    };
    if !verdict.valid {
        return error(StatusCode::UNAUTHORIZED, "invalid or revoked API token");
    }
    let key = verdict.token_preview.unwrap_or_default();
    if app.say_limiter.check_key(&key).is_err() {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "this token is over its /api/say rate (web.say_per_minute); retry later",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return resp;
    }
    // Checked after the rate, so a token's every request counts against it.
    let message = match map.get("message") {
        Some(Value::String(m)) => m.clone(),
        Some(_) => return error(StatusCode::BAD_REQUEST, "message must be a string"),
        None => return error(StatusCode::BAD_REQUEST, "missing message"),
    };
    if let Err(why) = check_message(&message, app.say_max_chars) {
        return error(StatusCode::BAD_REQUEST, why);
    }
    let enqueue = json!({"message": message, "channel": channel});
    match app
        .follower
        .ask_db::<_, wire::Enqueued>(subjects::db::OUTBOUND_ENQUEUE, &enqueue)
        .await
    {
        Ok(done) => {
            if let Some(channel) = channel {
                let follower = app.follower.clone();
                tokio::spawn(async move { follower.reload_outbound(&channel).await });
            }
            Json(json!({"queued": true, "id": done.id})).into_response()
        }
        Err(e) => upstream(e),
    }
}

fn admin_check(app: &App, headers: &HeaderMap, changes: bool) -> Result<(), Response> {
    app.access.may_administer(headers).map_err(refusal)?;
    if changes {
        app.access.check_csrf(headers).map_err(refusal)?;
    }
    Ok(())
}

async fn api_tokens_list(State(app): Shared, headers: HeaderMap, Query(q): Params) -> Response {
    if let Err(r) = admin_check(&app, &headers, false) {
        return r;
    }
    let include_revoked = matches!(
        q.get("include_revoked").map(String::as_str),
        Some("1" | "true" | "yes")
    );
    let req = wire::TokenList {
        include_revoked,
        channel: q.get("channel").cloned(),
    };
    match app
        .follower
        .ask_db::<_, TokenListReply>(subjects::db::TOKENS_LIST, &req)
        .await
    {
        Ok(list) => Json(list).into_response(),
        Err(e) => upstream(e),
    }
}

async fn api_tokens_create(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admin_check(&app, &headers, true) {
        return r;
    }
    let map = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let description = match map.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(d)) if d.chars().count() <= 200 && !d.chars().any(char::is_control) => {
            d.clone()
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "description must be text of at most 200 characters without control characters",
            )
        }
    };
    let req = wire::TokenCreate {
        description,
        channel: map
            .get("channel")
            .and_then(|c| c.as_str())
            .map(str::to_owned),
    };
    match app
        .follower
        .ask_db::<_, TokenCreated>(subjects::db::TOKENS_CREATE, &req)
        .await
    {
        Ok(made) => (
            StatusCode::CREATED,
            Json(json!({
                "token": made.token,
                "token_preview": made.token_preview,
                "description": made.description,
                "created_at": made.created_at,
                "message": "Save this token now: it is not shown again.",
            })),
        )
            .into_response(),
        Err(e) => upstream(e),
    }
}

async fn api_tokens_revoke(
    State(app): Shared,
    headers: HeaderMap,
    Path(prefix): Path<String>,
) -> Response {
    if let Err(r) = admin_check(&app, &headers, true) {
        return r;
    }
    if prefix.chars().count() < wire::TOKEN_PREFIX_MIN {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "give at least {} characters of the token",
                wire::TOKEN_PREFIX_MIN
            ),
        );
    }
    let req = wire::TokenRevoke {
        prefix,
        channel: None,
    };
    match app
        .follower
        .ask_db::<_, TokensRevoked>(subjects::db::TOKENS_REVOKE, &req)
        .await
    {
        Ok(r) if r.revoked == 0 => error(StatusCode::NOT_FOUND, "no active token matches"),
        Ok(r) => Json(json!({"revoked": r.revoked})).into_response(),
        Err(e) => upstream(e),
    }
}

async fn api_plugins(State(app): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = app.access.may_read(&headers) {
        return refusal(r);
    }
    let live = app.live();
    Json(json!({"plugins": live.plugins.values().collect::<Vec<_>>(), "runtime_reachable": live.runtime_reachable}))
        .into_response()
}

async fn api_plugin_action(
    State(app): Shared,
    headers: HeaderMap,
    Path((name, action)): Path<(String, String)>,
) -> Response {
    if let Err(r) = admin_check(&app, &headers, true) {
        return r;
    }
    let subject = match action.as_str() {
        "reload" => subjects::runtime::PLUGINS_RELOAD,
        "enable" => subjects::runtime::PLUGINS_ENABLE,
        "disable" => subjects::runtime::PLUGINS_DISABLE,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "the action must be reload, enable or disable",
            )
        }
    };
    if !subjects::is_plugin_name(&name) {
        return error(StatusCode::BAD_REQUEST, "not a plugin name");
    }
    let result = app
        .follower
        .ask::<_, rosey_plugin_api::actions::Ok>(subject, &PluginName { name: name.clone() })
        .await;
    app.follower.load_plugins().await;
    match result {
        Ok(_) => Json(json!({"ok": true, "plugin": name, "action": action})).into_response(),
        Err(e) => upstream(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn say_messages_are_checked() {
        assert!(check_message("hello", 240).is_ok());
        assert!(check_message("  ", 240).is_err());
        assert!(check_message(&"x".repeat(241), 240).is_err());
        assert!(check_message("a\u{7}b", 240)
            .unwrap_err()
            .contains("U+0007"));
        assert!(check_message("ünïcödé 中文", 240).is_ok());
    }

    #[test]
    fn channels_default_to_the_only_one() {
        let mut live = Live::default();
        assert_eq!(pick_channel(&live, None).unwrap(), None);
        live.channel_mut("a");
        assert_eq!(pick_channel(&live, None).unwrap().as_deref(), Some("a"));
        live.channel_mut("b");
        assert_eq!(
            pick_channel(&live, None).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            pick_channel(&live, Some("zz")).unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
        assert!(pick_channel(&live, Some("b")).is_ok());
    }
}
