//! rosey-web end to end with rosey-db (on a copy of the original's database, its one channel
//! `console`, which the bot joins), the plugin
//! runtime (serving quotes) and a console bot as processes: every API route and its error
//! statuses, tokens created, used and revoked (the fixture's original token included), a line
//! said through the API reaching the bot's chat and the page, the live feed, `/metrics` read by
//! a strict Prometheus parser, and `/health` turning 503 when the bot or rosey-db stops.

use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects;
use rosey_tests::bot_support::{write_config, ConsoleBot};
use rosey_tests::runtime_support::{config as runtime_config, shipped_plugin_dir, start_runtime};
use rosey_tests::web_support::{
    basic, get, http, parse_prometheus, start_web, Answer, Feed, Web, FIXTURE_TOKEN, WAIT,
};
use rosey_tests::{rosey_db_on_config, wait_for_rosey_db, wait_until_async, NatsServer, RoseyDb};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse";
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

async fn wait_status(web: &Web, path: &str, status: u16) -> Answer {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = get(web, path).await;
        if a.status == status {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered {status}; last: {a:?}\n{}",
            web.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn say(web: &Web, token: &str, body: &str) -> Answer {
    http(
        web.addr,
        "POST",
        "/api/say",
        &[("X-API-Token", token)],
        Some(body.as_bytes()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_page_feed_metrics_and_health_over_nats() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let db = RoseyDb::start_on_fixture(&nats, &client, WAIT).await;
    let runtime = start_runtime(&runtime_config(
        &nats,
        &shipped_plugin_dir("quotes"),
        json!({"enabled": ["quotes"], "hot_reload": false}),
    ));
    let mut bot = ConsoleBot::start(&json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "channel": "console", "console_user": "tester",
                     "credentials": {"username": "rosey"},
                     "outbound_poll_interval": 0.2, "status_interval": 0.5}
    }));
    let web = start_web(
        &nats,
        json!({"password": PASSWORD, "say_per_minute": 3, "say_max_chars": 50}),
    );

    // Healthy once the bot, rosey-db and the services are seen; the page was opened after
    // the bot joined and still lists its users.
    wait_status(&web, "/health", 200).await;
    let page = get(&web, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(">tester<"), "{}", page.body);
    assert!(page.body.contains(">rosey<"));
    // Healthy: no banner, and the tab's title carries no warning.
    assert!(!page.body.contains("Needs attention"));
    assert!(
        page.body.contains("<title>Rosey · console</title>"),
        "{}",
        page.body
    );
    let csp = &page.headers["content-security-policy"];
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert!(!page.body.contains("<script>"), "no inline script");

    // Read routes, served from what rosey-web keeps.
    let current = get(&web, "/api/current").await.json();
    assert_eq!(current["status"]["bot_name"], "rosey");
    assert_eq!(current["status"]["channel_name"], "console");
    assert_eq!(current["status"]["bot_connected"], true);
    assert!(current["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["username"] == "tester"));
    let stats = get(&web, "/api/stats").await.json();
    assert_eq!(stats["total_users_seen"], 45, "the fixture's users");
    assert!(stats["top_chatters"].as_array().unwrap().len() <= 10);
    assert!(stats["high_water_mark"]["users"].as_i64().unwrap() >= 50);
    assert!(get(&web, "/api/history/24").await.json().is_array());
    assert_eq!(get(&web, "/api/history/9999").await.status, 200, "capped");
    assert_eq!(get(&web, "/api/history/abc").await.status, 400);
    let user = get(&web, "/api/user/user7_5").await;
    assert_eq!(user.status, 200);
    assert_eq!(user.json()["total_chat_lines"], 24);
    assert_eq!(get(&web, "/api/user/nobody-here").await.status, 404);
    let outbound = get(&web, "/api/outbound/recent?limit=5").await.json();
    let messages = outbound["messages"].as_array().unwrap();
    assert!(!messages.is_empty() && messages.len() <= 5);
    for m in messages {
        let s = m["status"].as_str().unwrap();
        assert!(
            ["sent", "failed", "queued", "retrying", "abandoned"].contains(&s),
            "{m}"
        );
    }
    assert_eq!(get(&web, "/api/outbound/recent?limit=0").await.status, 400);
    assert_eq!(get(&web, "/api/outbound/recent?limit=x").await.status, 400);
    assert_eq!(
        get(&web, "/api/current?channel=elsewhere").await.status,
        404
    );
    assert_eq!(get(&web, "/no/such/route").await.status, 404);
    assert_eq!(get(&web, "/chart.svg?range=1y").await.status, 400);
    let chart = get(&web, "/chart.svg?range=7d").await;
    assert_eq!(chart.headers["content-type"], "image/svg+xml");
    assert!(chart.body.starts_with("<svg") && chart.body.ends_with("</svg>"));

    // The live feed, opened before anything is said.
    let mut feed = Feed::open(&web, "?channel=console").await;

    // /api/say with the original's token (moved by rosey-db into its hashed table).
    let hostile_body = json!({"message": HOSTILE}).to_string();
    let queued = say(&web, FIXTURE_TOKEN, &hostile_body).await;
    assert_eq!(queued.status, 200, "{}", queued.body);
    assert_eq!(queued.json()["queued"], true);
    assert!(queued.json()["id"].as_i64().unwrap() > 0);
    let heard = loop {
        let line = bot.next_stdout();
        if line.contains("onerror") {
            break line;
        }
    };
    assert_eq!(heard, format!("<rosey> {HOSTILE}"));
    // The bot's own line reaches the page live, escaped.
    let escaped = "&lt;img src=x onerror=alert(1)&gt;";
    feed.wait_for("chat", escaped).await;
    let page = get(&web, "/").await.body;
    assert!(page.contains(escaped) && !page.contains(HOSTILE));

    // A line typed in the channel reaches the feed too.
    bot.type_line("hello from the console");
    feed.wait_for("chat", "hello from the console").await;
    // And a command answered by a plugin: the bot's answer appears as its own line.
    bot.type_line("!quote count");
    feed.wait_for("chat", "No quotes yet").await;

    // Bad say requests.
    assert_eq!(say(&web, "", "{}").await.status, 401);
    let no_token = http(web.addr, "POST", "/api/say", &[], Some(b"{}")).await;
    assert_eq!(no_token.status, 401);
    assert!(no_token.json()["error"]
        .as_str()
        .unwrap()
        .contains("X-API-Token"));
    assert_eq!(say(&web, "not-a-token", &hostile_body).await.status, 401);
    assert_eq!(say(&web, FIXTURE_TOKEN, "{\"message\": ").await.status, 400);
    // Every request a valid token makes counts against its rate (3 per minute here).
    assert_eq!(
        say(&web, FIXTURE_TOKEN, "{}").await.status,
        400,
        "missing message"
    );
    assert_eq!(say(&web, FIXTURE_TOKEN, "{}").await.status, 400);
    let limited = say(&web, FIXTURE_TOKEN, &hostile_body).await;
    assert_eq!(limited.status, 429, "the 4th in a minute: {}", limited.body);
    assert!(limited.headers.contains_key("retry-after"));

    // Token administration needs the admin credential and, from a browser, the CSRF token.
    let admin = basic(PASSWORD);
    assert_eq!(get(&web, "/api/tokens").await.status, 401);
    let wrong = basic("nope");
    let refused = http(
        web.addr,
        "GET",
        "/api/tokens",
        &[("Authorization", &wrong)],
        None,
    )
    .await;
    assert_eq!(refused.status, 401);
    assert!(refused.headers.contains_key("www-authenticate"));
    let list = http(
        web.addr,
        "GET",
        "/api/tokens",
        &[("Authorization", &admin)],
        None,
    )
    .await;
    assert_eq!(list.status, 200);
    let tokens = list.json()["tokens"].clone();
    assert_eq!(tokens[0]["token_preview"], "MUYoaOQ8...");
    assert!(
        !list.body.contains(FIXTURE_TOKEN),
        "a token is never shown again"
    );
    let cross_site = http(
        web.addr,
        "POST",
        "/api/tokens",
        &[("Authorization", &admin), ("Origin", "http://evil.example")],
        Some(b"{}"),
    )
    .await;
    assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    let made = http(
        web.addr,
        "POST",
        "/api/tokens",
        &[("Authorization", &admin)],
        Some(br#"{"description": "overlay"}"#),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let token = made.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);

    // The new token's say checks: length, control characters, then it speaks.
    let long = json!({"message": "x".repeat(51)}).to_string();
    assert_eq!(say(&web, &token, &long).await.status, 400);
    let bell = json!({"message": "ding\u{7}"}).to_string();
    assert_eq!(say(&web, &token, &bell).await.status, 400);
    let ok = say(
        &web,
        &token,
        &json!({"message": "via a new token"}).to_string(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    feed.wait_for("chat", "via a new token").await;
    let huge = json!({"message": "y".repeat(40_000)}).to_string();
    assert_eq!(say(&web, &token, &huge).await.status, 413);

    // Revoke: at least 8 characters; then the token is refused.
    let short = http(
        web.addr,
        "DELETE",
        &format!("/api/tokens/{}", &token[..7]),
        &[("Authorization", &admin)],
        None,
    )
    .await;
    assert_eq!(short.status, 400);
    let revoke = |prefix: String| {
        let admin = admin.clone();
        let addr = web.addr;
        async move {
            http(
                addr,
                "DELETE",
                &format!("/api/tokens/{prefix}"),
                &[("Authorization", &admin)],
                None,
            )
            .await
        }
    };
    let revoked = revoke(token[..8].to_owned()).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json()["revoked"], 1);
    assert_eq!(revoke(token[..8].to_owned()).await.status, 404);
    assert_eq!(
        say(&web, &token, &json!({"message": "too late"}).to_string())
            .await
            .status,
        401
    );

    // Plugin control from the API (the page's buttons post the same).
    let plugins = get(&web, "/api/plugins").await.json();
    assert_eq!(plugins["plugins"][0]["name"], "quotes");
    let act = |action: &'static str| {
        let admin = admin.clone();
        let addr = web.addr;
        async move {
            http(
                addr,
                "POST",
                &format!("/api/plugins/quotes/{action}"),
                &[("Authorization", &admin)],
                None,
            )
            .await
        }
    };
    assert_eq!(act("disable").await.status, 200);
    assert_eq!(
        get(&web, "/api/plugins").await.json()["plugins"][0]["state"],
        "disabled"
    );
    assert_eq!(act("enable").await.status, 200);
    assert_eq!(act("explode").await.status, 404);
    let anonymous = http(web.addr, "POST", "/api/plugins/quotes/disable", &[], None).await;
    assert_eq!(anonymous.status, 401);

    // Metrics: strict text format, the original's names, per service and per plugin.
    let metrics = get(&web, "/metrics").await;
    assert!(metrics.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    let samples =
        parse_prometheus(&metrics.body).unwrap_or_else(|e| panic!("{e}\n{}", metrics.body));
    let value = |name: &str, label: (&str, &str)| -> f64 {
        samples
            .iter()
            .find(|s| s.name == name && s.labels.get(label.0).map(String::as_str) == Some(label.1))
            .unwrap_or_else(|| panic!("no {name}{{{}={}}}\n{}", label.0, label.1, metrics.body))
            .value
    };
    assert_eq!(value("rosey_bot_up", ("channel", "console")), 1.0);
    assert_eq!(value("rosey_bot_connected", ("channel", "console")), 1.0);
    assert!(value("rosey_channel_users", ("channel", "console")) >= 2.0);
    assert!(value("rosey_bot_uptime_seconds", ("channel", "console")) >= 0.0);
    for service in ["rosey-db", "rosey-bot", "rosey-web", "rosey-runtime"] {
        assert_eq!(
            value("rosey_service_up", ("service", service)),
            1.0,
            "{service}"
        );
    }
    assert!(value("rosey_plugin_generation", ("plugin", "quotes")) >= 1.0);
    for name in [
        "rosey_requests_total",
        "rosey_errors_total",
        "rosey_error_rate_percent",
    ] {
        assert!(samples.iter().any(|s| s.name == name), "{name}");
    }

    // Health flips when the bot stops, and again when rosey-db stops.
    drop(bot);
    let down = wait_status(&web, "/health", 503).await;
    assert!(down.body.contains("bot for console"), "{}", down.body);
    // The open page says so live, at the top, and a page opened now too (tab title warned).
    let banner = feed.wait_for("section", "Needs attention").await;
    assert!(banner.contains("bot for console"), "{banner}");
    let page = get(&web, "/").await.body;
    assert!(
        page.contains("Needs attention") && page.contains("the bot for console"),
        "{page}"
    );
    assert!(page.contains("<title>⚠ Rosey · console</title>"), "{page}");
    drop(db);
    let ok = wait_until_async(WAIT, || async {
        let a = get(&web, "/health").await;
        a.status == 503 && a.body.contains("rosey-db")
    })
    .await;
    assert!(ok, "{}", get(&web, "/health").await.body);
    drop(runtime);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_request_gets_a_clear_answer_and_nothing_crashes() {
    let nats = NatsServer::start();
    let web = start_web(&nats, json!({}));
    // Nothing else runs: rosey-db's absence is reported, not a hang or a crash.
    let say = say(&web, FIXTURE_TOKEN, &json!({"message": "hi"}).to_string()).await;
    assert!(
        [503, 504].contains(&say.status),
        "{} {}",
        say.status,
        say.body
    );
    assert!(say.json()["error"].is_string());
    for body in ["[1,2]", "\"text\"", "{\"message\": 5}", "\u{0}"] {
        let a = http(
            web.addr,
            "POST",
            "/api/say",
            &[("X-API-Token", "t")],
            Some(body.as_bytes()),
        )
        .await;
        assert!(
            a.status == 400 || a.status >= 500,
            "{body:?}: {} {}",
            a.status,
            a.body
        );
    }
    let health = get(&web, "/health").await;
    assert_eq!(health.status, 503);
    let problems: Value = health.json()["problems"].clone();
    assert!(problems.to_string().contains("no bot"), "{problems}");
    // Still serving.
    assert_eq!(get(&web, "/").await.status, 200);
}

/// What rosey-db holds of `channel` as the `stats` request answers it.
async fn db_stats(client: &async_nats::Client, channel: &str) -> Option<Value> {
    request_json(
        client,
        subjects::db::QUERY_CHANNEL_STATS,
        &json!({"channel": channel}),
        WAIT,
    )
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_gets_its_own_stats_history_chart_and_outbound() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "console_user": "tester",
                     "credentials": {"username": "rosey"},
                     "outbound_poll_interval": 0.2, "status_interval": 0.5,
                     "channels": [{"name": "lobby"}, {"name": "second"}]},
        "database": {"path": dir.path().join("bot_data.db")},
    });
    let file = write_config(dir.path(), &config);
    let _db = rosey_db_on_config(&file);
    wait_for_rosey_db(&client, WAIT).await;

    // Each channel's own counts, far above what a console bot reports, and an outbound line
    // of its own; the first channel writes on the plain subjects, the second names itself.
    for (channel, users, connected) in [("lobby", 17u64, 19u64), ("second", 29, 31)] {
        let write = |w: &str| {
            if channel == "lobby" {
                w.to_owned()
            } else {
                subjects::db::channel_write(channel, w).unwrap()
            }
        };
        let count = json!({"chat_count": users, "connected_count": connected});
        for subject in [
            subjects::db::STATS_USER_COUNT,
            subjects::db::STATS_HIGH_WATER,
        ] {
            client
                .publish(write(subject), count.to_string().into())
                .await
                .unwrap();
        }
        let _: Value = request_json(
            &client,
            subjects::db::OUTBOUND_ENQUEUE,
            &json!({"channel": channel, "message": format!("only in {channel}")}),
            WAIT,
        )
        .await
        .unwrap();
    }
    client.flush().await.unwrap();
    for (channel, users) in [("lobby", 17), ("second", 29)] {
        let stored = wait_until_async(WAIT, || async {
            db_stats(&client, channel)
                .await
                .is_some_and(|s| s["high_water_mark"]["users"] == users)
        })
        .await;
        assert!(stored, "rosey-db never stored {channel}'s counts");
    }

    let bot = |channel: &'static str| {
        ConsoleBot::start_with(&config, move |mut cmd| {
            cmd.arg("--channel").arg(channel);
            cmd
        })
    };
    let (_lobby, _second) = (bot("lobby"), bot("second"));
    let web = start_web(&nats, json!({}));

    // Both channels known: a read route without one is refused, naming them. (rosey-db
    // refuses an unnamed read too, with the same 400, before rosey-web has heard both bots:
    // wait for rosey-web's own refusal.)
    let deadline = tokio::time::Instant::now() + WAIT;
    let refused = loop {
        let answer = wait_status(&web, "/api/stats", 400).await;
        if answer.body.contains("?channel=") {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rosey-web never knew both channels: {}",
            answer.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        refused.body.contains("lobby") && refused.body.contains("second"),
        "{}",
        refused.body
    );
    assert_eq!(get(&web, "/api/history/1").await.status, 400);
    assert_eq!(get(&web, "/api/outbound/recent").await.status, 400);
    assert_eq!(get(&web, "/chart.svg?range=24h").await.status, 400);
    assert_eq!(get(&web, "/api/stats?channel=nowhere").await.status, 404);

    for (channel, users, other) in [("lobby", 17, 29), ("second", 29, 17)] {
        let stats = get(&web, &format!("/api/stats?channel={channel}")).await;
        assert_eq!(stats.status, 200, "{}", stats.body);
        assert_eq!(stats.json()["high_water_mark"]["users"], users, "{channel}");

        let history = get(&web, &format!("/api/history/1?channel={channel}")).await;
        assert_eq!(history.status, 200, "{}", history.body);
        let samples = history.json();
        let chat_users: Vec<u64> = samples
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["chat_users"].as_u64().unwrap())
            .collect();
        assert!(chat_users.contains(&users), "{channel}: {chat_users:?}");
        assert!(!chat_users.contains(&other), "{channel}: {chat_users:?}");

        let outbound = get(&web, &format!("/api/outbound/recent?channel={channel}")).await;
        assert_eq!(outbound.status, 200, "{}", outbound.body);
        let texts: Vec<String> = outbound.json()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            texts.contains(&format!("only in {channel}")) && texts.len() == 1,
            "{channel}: {texts:?}"
        );

        let chart = get(&web, &format!("/chart.svg?range=24h&channel={channel}")).await;
        assert_eq!(chart.status, 200, "{}", chart.body);
        assert!(chart.body.starts_with("<svg"), "{}", chart.body);

        let page = get(&web, &format!("/?channel={channel}")).await;
        assert_eq!(page.status, 200);
        assert!(
            page.body
                .contains(&format!("/chart.svg?range=24h&amp;channel={channel}&amp;")),
            "the page's chart is its channel's"
        );
        assert!(page.body.contains(&format!("only in {channel}")));
        assert!(!page.body.contains(&format!(
            "only in {}",
            if channel == "lobby" {
                "second"
            } else {
                "lobby"
            }
        )));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_nats_is_down_and_recovers_after_a_restart() {
    let mut nats = NatsServer::start();
    let client = nats.connect().await;
    let _db = RoseyDb::start_on_fixture(&nats, &client, WAIT).await;
    let _bot = ConsoleBot::start(&json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "channel": "console", "console_user": "tester",
                     "credentials": {"username": "rosey"}, "status_interval": 0.5}
    }));
    let web = start_web(&nats, json!({}));
    wait_status(&web, "/health", 200).await;

    nats.stop();
    let down = wait_status(&web, "/health", 503).await;
    assert!(
        down.body.contains("rosey-web is not connected to NATS"),
        "{}",
        down.body
    );
    // The page is still served, and says so.
    let page = get(&web, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("NATS down"), "{}", page.body);

    // Back by itself: state loaded again, users listed, healthy.
    nats.restart();
    wait_status(&web, "/health", 200).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = get(&web, "/").await;
        if page.body.contains("NATS connected") && page.body.contains(">tester<") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never recovered: {}\n{}",
            page.body,
            web.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let current = get(&web, "/api/current").await;
    assert_eq!(current.status, 200);
    assert!(current.body.contains("\"tester\""), "{}", current.body);
}

/// The live tokens in `file`'s `rosey_api_tokens`, by preview.
fn live_tokens_in(file: &std::path::Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn
        .prepare("SELECT preview FROM rosey_api_tokens WHERE revoked = 0 ORDER BY preview")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_deployment_wide_across_channels() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    // The first channel keeps the original's file (the fixture's channel is `testchan`, its
    // token moved there); the two further channels get files of their own.
    let first = dir.path().join("bot_data.db");
    std::fs::copy(
        rosey_tests::shared_dir().join("fixtures/rosey-v0.5-sample.db"),
        &first,
    )
    .unwrap();
    let channels = ["testchan", "second", "third"];
    let config = json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "console_user": "tester",
                     "credentials": {"username": "rosey"},
                     "outbound_poll_interval": 0.2, "status_interval": 0.5,
                     "channels": channels.iter().map(|c| json!({"name": c})).collect::<Vec<_>>()},
        "database": {"path": first},
    });
    let file = write_config(dir.path(), &config);
    let _db = rosey_db_on_config(&file);
    wait_for_rosey_db(&client, WAIT).await;
    let bots: Vec<ConsoleBot> = channels
        .iter()
        .map(|channel| {
            ConsoleBot::start_with(&config, move |mut cmd| {
                cmd.arg("--channel").arg(channel);
                cmd
            })
        })
        .collect();
    let web = start_web(&nats, json!({"password": PASSWORD, "say_per_minute": 100}));
    let admin = basic(PASSWORD);
    // Every channel known to rosey-web (so `/api/say` may name it).
    for channel in channels {
        wait_status(&web, &format!("/api/current?channel={channel}"), 200).await;
    }

    // Made once, naming a further channel: it still goes to the deployment's one table.
    let made = http(
        web.addr,
        "POST",
        "/api/tokens",
        &[("Authorization", &admin)],
        Some(br#"{"description": "everywhere", "channel": "third"}"#),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let token = made.json()["token"].as_str().unwrap().to_owned();
    let preview = format!("{}...", &token[..8]);
    // A channel rosey-db does not serve is refused, not silently mapped to the first file.
    let elsewhere = http(
        web.addr,
        "POST",
        "/api/tokens",
        &[("Authorization", &admin)],
        Some(br#"{"channel": "nowhere"}"#),
    )
    .await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);

    // Listed once, whichever channel the list names.
    for query in ["", "?channel=second", "?channel=third"] {
        let list = http(
            web.addr,
            "GET",
            &format!("/api/tokens{query}"),
            &[("Authorization", &admin)],
            None,
        )
        .await;
        assert_eq!(list.status, 200, "{}", list.body);
        let previews: Vec<String> = list.json()["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["token_preview"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            previews.iter().filter(|p| **p == preview).count(),
            1,
            "{query}: {previews:?}"
        );
        assert_eq!(
            previews.iter().filter(|p| *p == "MUYoaOQ8...").count(),
            1,
            "{query}: {previews:?}"
        );
    }

    // Both the new token and the original's speak in every channel, each line reaching that
    // channel's bot.
    for (bot, channel) in bots.iter().zip(channels) {
        for (who, key) in [("new", token.as_str()), ("original", FIXTURE_TOKEN)] {
            let line = format!("{who} token in {channel}");
            let said = say(
                &web,
                key,
                &json!({"message": line, "channel": channel}).to_string(),
            )
            .await;
            assert_eq!(said.status, 200, "{channel}, {who}: {}", said.body);
            let heard = loop {
                let out = bot.next_stdout();
                if out.contains(&line) {
                    break out;
                }
            };
            assert_eq!(heard, format!("<rosey> {line}"));
        }
    }
    // The tokens are in the first file only.
    let mut expected = vec!["MUYoaOQ8".to_owned(), token[..8].to_owned()];
    expected.sort();
    assert_eq!(live_tokens_in(&first), expected);
    for channel in &channels[1..] {
        let further = dir.path().join(format!("bot_data.{channel}.db"));
        assert!(
            live_tokens_in(&further).is_empty(),
            "{channel}'s file holds tokens"
        );
    }

    // Revoked once (naming no channel), refused in every channel.
    let revoked = http(
        web.addr,
        "DELETE",
        &format!("/api/tokens/{}", &token[..8]),
        &[("Authorization", &admin)],
        None,
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json()["revoked"], 1);
    for channel in channels {
        let refused = say(
            &web,
            &token,
            &json!({"message": "too late", "channel": channel}).to_string(),
        )
        .await;
        assert_eq!(refused.status, 401, "{channel}: {}", refused.body);
    }
}

/// Requests rosey-db's `endpoint` has answered so far (its `$SRV.STATS`).
async fn db_endpoint_requests(client: &async_nats::Client, endpoint: &str) -> u64 {
    let reply = client
        .request("$SRV.STATS.rosey-db", "".into())
        .await
        .unwrap();
    let stats: Value = serde_json::from_slice(&reply.payload).unwrap();
    stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == endpoint)
        .and_then(|e| e["num_requests"].as_u64())
        .unwrap_or_else(|| panic!("no endpoint {endpoint} in {stats}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rosey_db_is_asked_only_about_channels_someone_looks_at() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "console_user": "tester",
                     "credentials": {"username": "rosey"},
                     "channels": [{"name": "lobby"}, {"name": "second"}]},
        "database": {"path": dir.path().join("bot_data.db")},
    });
    let file = write_config(dir.path(), &config);
    let _db = rosey_db_on_config(&file);
    wait_for_rosey_db(&client, WAIT).await;
    let web = start_web(&nats, json!({}));
    // rosey-web learns both channels from a chat line in each, said again until it lists both
    // (its subscription may come after the first); `/api/current` without a channel lists them
    // and marks no channel as looked at.
    let known = wait_until_async(WAIT, || async {
        let listed = get(&web, "/api/current").await.body;
        if listed.contains("lobby") && listed.contains("second") {
            return true;
        }
        for channel in ["lobby", "second"] {
            let line = json!({"platform": "console", "channel": channel, "timestamp": 1,
                              "platform_data": null, "user": "tester",
                              "content": format!("hello {channel}"), "is_command": false});
            client
                .publish(subjects::events::MESSAGE, line.to_string().into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        false
    })
    .await;
    assert!(known, "rosey-web never listed both channels");

    // Nobody looks: several timer ticks pass without a question about either channel's
    // outbound queue or stats.
    let quiet = (
        db_endpoint_requests(&client, "outbound-recent").await,
        db_endpoint_requests(&client, "channel-stats").await,
    );
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert_eq!(
        (
            db_endpoint_requests(&client, "outbound-recent").await,
            db_endpoint_requests(&client, "channel-stats").await,
        ),
        quiet,
        "rosey-web polled rosey-db for channels nobody looks at"
    );

    // A page opened on one channel loads that channel's figures before it is drawn...
    let _: Value = request_json(
        &client,
        subjects::db::OUTBOUND_ENQUEUE,
        &json!({"channel": "lobby", "message": "queued before the page"}),
        WAIT,
    )
    .await
    .unwrap();
    // (A read waits a bounded time for them, so a busy machine may need a second look.)
    let shown = wait_until_async(WAIT, || async {
        get(&web, "/?channel=lobby")
            .await
            .body
            .contains("queued before the page")
    })
    .await;
    assert!(shown, "the page never showed lobby's queue");
    // ...and, while it stays open, keeps them current: a line queued later appears on it.
    let mut feed = Feed::open(&web, "?channel=lobby").await;
    let _: Value = request_json(
        &client,
        subjects::db::OUTBOUND_ENQUEUE,
        &json!({"channel": "lobby", "message": "queued while the page is open"}),
        WAIT,
    )
    .await
    .unwrap();
    feed.wait_for("section", "queued while the page is open")
        .await;
    // The API reads a channel nobody watched with figures loaded for the read.
    let _: Value = request_json(
        &client,
        subjects::db::OUTBOUND_ENQUEUE,
        &json!({"channel": "second", "message": "in second"}),
        WAIT,
    )
    .await
    .unwrap();
    let stats = get(&web, "/api/stats?channel=second").await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let shown = wait_until_async(WAIT, || async {
        get(&web, "/?channel=second")
            .await
            .body
            .contains("in second")
    })
    .await;
    assert!(shown, "the page never showed second's queue");
}

/// With several channels configured and no bot heard from yet (rosey-db refuses a read naming
/// no channel then), rosey-web loads each configured channel's chat from rosey-db: a page
/// opened before the bots start shows what each channel said, and only there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_any_bot_is_heard_the_configured_channels_chat_is_loaded() {
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let config = json!({
        "nats": {"server": nats.url()},
        "platform": {"type": "console", "credentials": {"username": "rosey"},
                     "channels": [{"name": "lobby"}, {"name": "second"}]},
        "database": {"path": dir.path().join("bot_data.db")},
        "web": {"listen": "127.0.0.1:0"},
    });
    let file = write_config(dir.path(), &config);
    let _db = rosey_db_on_config(&file);
    wait_for_rosey_db(&client, WAIT).await;
    for channel in ["lobby", "second"] {
        let subject = if channel == "lobby" {
            subjects::db::MESSAGE_LOG.to_owned()
        } else {
            subjects::db::channel_write(channel, subjects::db::MESSAGE_LOG).unwrap()
        };
        let line = json!({"username": "alice", "message": format!("said in {channel}")});
        client
            .publish(subject, line.to_string().into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    let web_dir = tempfile::tempdir().unwrap();
    let web = rosey_tests::web_support::try_start_web_on(web_dir, &file, |cmd| cmd)
        .unwrap_or_else(|e| panic!("rosey-web did not start: {e}"));
    for (channel, other) in [("lobby", "second"), ("second", "lobby")] {
        let shown = wait_until_async(WAIT, || async {
            let page = get(&web, &format!("/?channel={channel}")).await;
            page.status == 200 && page.body.contains(&format!("said in {channel}"))
        })
        .await;
        assert!(shown, "{channel}'s chat never reached the page");
        let page = get(&web, &format!("/?channel={channel}")).await;
        assert!(
            !page.body.contains(&format!("said in {other}")),
            "{other}'s line on {channel}'s page"
        );
    }
}
