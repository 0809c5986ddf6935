//! Least privilege on the bus: a nats-server running the authorization block generated from the
//! contract's table (`rosey_plugin_api::access`, what `rosey nats-config` prints), every process
//! logged in as its own role. Each process works end to end (a console line in, the plugin's
//! answer out, the database written, the LLM asked, the admin commands, rosey-web's reads,
//! tokens and `/api/say`), with no permission violation in the server's log; and each role is
//! refused what is not its own.
//!
//! A "spy" user with every right is added to the block, to see what reaches the server: a
//! refused publish is followed, on the same connection, by one the role may make, and once the
//! spy has that one, the refused one can no longer arrive (a connection's messages keep their
//! order).

use futures::StreamExt;
use rosey_plugin_api::access::{self, Password, Role};
use rosey_plugin_api::admin::{PluginState, PluginsList, PluginsListRequest};
use rosey_plugin_api::reply::request_json;
use rosey_plugin_api::subjects;
use rosey_tests::bot_support::{ConsoleBot, WAIT};
use rosey_tests::llm_support::{openai_ok, Mock};
use rosey_tests::web_support::{basic, get, http, try_start_web_on, Web};
use rosey_tests::{command, target_dir, wait_until_async, ChildGuard, NatsServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const SPY: &str = "spy";
/// rosey-web's admin password (`web.password`, HTTP Basic `admin`).
const WEB_ADMIN_PASSWORD: &str = "web-admin-secret";

fn password(role: Role) -> String {
    format!("pw-{role}-secret")
}

/// A server running the generated block (each role's password [`password`]) plus the spy.
fn server() -> NatsServer {
    let block = access::authorization_block(&[], |r| Password::Literal(password(r))).unwrap();
    let with_spy = block.replacen(
        "users = [\n",
        &format!("users = [\n    {{user: \"{SPY}\", password: \"{SPY}\"}}\n"),
        1,
    );
    NatsServer::start_with_config(&with_spy)
}

async fn connect_as(nats: &NatsServer, user: &str, pass: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.to_owned(), pass.to_owned())
        .custom_inbox_prefix(access::inbox_prefix(user))
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"))
}

async fn connect_role(nats: &NatsServer, role: Role) -> async_nats::Client {
    connect_as(nats, &role.user(), &password(role)).await
}

/// Sets a child's NATS login to `role`, as `rosey up` does.
fn login(cmd: &mut std::process::Command, role: Role) {
    cmd.env("ROSEY_NATS_USER", role.user())
        .env("ROSEY_NATS_PASSWORD", password(role));
}

/// The server log's permission violations.
fn violations(nats: &NatsServer) -> Vec<String> {
    nats.log()
        .lines()
        .filter(|l| l.contains("Violation"))
        .map(str::to_owned)
        .collect()
}

/// Spawns one of our binaries on `config` as `role`, its log in `dir`.
fn spawn(name: &str, role: Role, config: &Path, dir: &Path) -> ChildGuard {
    let mut cmd = command(name);
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
    login(&mut cmd, role);
    ChildGuard::spawn(name, cmd)
}

/// Runs `rosey <args>` with `config` as the operator; (success, stdout + stderr).
fn rosey(args: &[&str], config: &Path, env: Option<Role>) -> (bool, String) {
    let mut cmd = command("rosey");
    cmd.args(args).arg("--config").arg(config);
    if let Some(role) = env {
        login(&mut cmd, role);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn recent_chat(db: &PathBuf) -> Vec<String> {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|conn| {
            let mut stmt = conn.prepare("SELECT message FROM recent_chat")?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .unwrap_or_default()
}

/// The text of the bot's next chat line (`<rosey> text`) holding `want`, within [`WAIT`].
fn said(bot: &ConsoleBot, want: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = vec![];
    while std::time::Instant::now() < deadline {
        if let Some(line) = bot.next_stdout_within(Duration::from_millis(200)) {
            if line.contains(want) {
                return line.strip_prefix("<rosey> ").unwrap_or(&line).to_owned();
            }
            seen.push(line);
        }
    }
    panic!("the bot never said {want:?}; it said {seen:?}");
}

/// `path` from rosey-web once it answers `status` (within [`WAIT`]).
async fn web_status(web: &Web, path: &str, status: u16, nats: &NatsServer) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = get(web, path).await;
        if a.status == status {
            return a.json();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered {status}; last {a:?}\n{}\n{:?}",
            web.log(),
            violations(nats)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// rosey-web's reads, health, token administration and `/api/say`, as the web role.
async fn web_works_end_to_end(web: &Web, bot: &ConsoleBot, nats: &NatsServer) {
    web_status(web, "/health", 200, nats).await;
    let lists_tester = wait_until_async(WAIT, || async {
        let current = get(web, "/api/current").await;
        current.status == 200
            && current.json()["users"]
                .as_array()
                .is_some_and(|users| users.iter().any(|u| u["username"] == "tester"))
    })
    .await;
    assert!(
        lists_tester,
        "/api/current never listed the console user: {:?}\n{}",
        get(web, "/api/current").await,
        web.log()
    );
    let stats = web_status(web, "/api/stats", 200, nats).await;
    assert!(
        stats["total_users_seen"].as_u64().is_some_and(|n| n >= 1),
        "{stats}"
    );
    let admin = basic(WEB_ADMIN_PASSWORD);
    let made = http(
        web.addr,
        "POST",
        "/api/tokens",
        &[("Authorization", &admin)],
        Some(br#"{"description": "least privilege"}"#),
    )
    .await;
    assert_eq!(made.status, 201, "{}\n{}", made.body, web.log());
    let token = made.json()["token"].as_str().unwrap().to_owned();
    let say = http(
        web.addr,
        "POST",
        "/api/say",
        &[("X-API-Token", &token)],
        Some(br#"{"message": "said through rosey-web"}"#),
    )
    .await;
    assert!(
        say.status < 300,
        "{} {}\n{}",
        say.status,
        say.body,
        web.log()
    );
    assert_eq!(said(bot, "through rosey-web"), "said through rosey-web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_works_end_to_end_as_its_own_role() {
    let nats = server();
    let operator = connect_role(&nats, Role::Operator).await;
    let mock = Mock::start(openai_ok("Hello from the model", "gpt-test")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rosey.db");
    let config = json!({
        "nats": {"server": nats.url()},
        "platform": {
            "type": "console", "console_user": "tester",
            "credentials": {"username": "rosey"},
            "status_interval": 0.2, "outbound_poll_interval": 0.2,
        },
        "database": {"path": db},
        "plugins": {
            "directory": target_dir(),
            "enabled": ["quotes"],
            "hot_reload": false,
            "tick_interval": 0.1,
            "config": {"llm": {"seed": 7, "user_cooldown_seconds": 0}},
        },
        "llm": {
            "enabled": true,
            "provider": "openai",
            "openai": {"base_url": format!("{}/v1", mock.base()), "model": "gpt-test"},
            "gateway": {"request_timeout": 20, "max_retries": 0},
        },
        "web": {"listen": "127.0.0.1:0", "password": WEB_ADMIN_PASSWORD},
        "logging": {"level": "info"},
    });
    let path = dir.path().join("rosey.json");
    std::fs::write(&path, config.to_string()).unwrap();

    let _db = spawn("rosey-db", Role::Db, &path, dir.path());
    let _llm = spawn("rosey-llm", Role::Llm, &path, dir.path());
    let _rt = spawn("rosey-runtime", Role::Runtime, &path, dir.path());
    // `rosey up`'s readiness probes, as the operator: discovery and the plugin list.
    let services = wait_until_async(WAIT, || async {
        operator
            .request(format!("{}.rosey-db", subjects::service::PING), "".into())
            .await
            .is_ok()
            && operator
                .request(format!("{}.rosey-llm", subjects::service::PING), "".into())
                .await
                .is_ok()
    })
    .await;
    assert!(
        services,
        "rosey-db and rosey-llm never answered $SRV.PING: {:?}",
        violations(&nats)
    );
    let loaded = wait_until_async(WAIT, || async {
        let list: Result<PluginsList, _> = request_json(
            &operator,
            subjects::runtime::PLUGINS_LIST,
            &PluginsListRequest {},
            Duration::from_millis(500),
        )
        .await;
        list.is_ok_and(|l| {
            ["quotes", "llm"].iter().all(|n| {
                l.plugins
                    .iter()
                    .any(|p| p.name == *n && p.state == PluginState::Running)
            })
        })
    })
    .await;
    assert!(
        loaded,
        "the runtime never served quotes and llm: {:?}",
        violations(&nats)
    );

    let mut bot = {
        let mut cfg = config.clone();
        cfg["logging"] = json!({"level": "info"});
        ConsoleBot::start_with(&cfg, |mut cmd| {
            login(&mut cmd, Role::Bot);
            cmd
        })
    };
    // A console line in, the plugin's answer out (bot → runtime → db's key-value → bot).
    bot.type_line("!quote add The cake is a lie");
    assert_eq!(said(&bot, "quote"), "Added quote #1.");
    bot.type_line("!quote 1");
    assert_eq!(said(&bot, "#1"), "#1: The cake is a lie");
    // The LLM: runtime → rosey-llm → the provider, and back.
    bot.type_line("!ai say hello");
    assert!(said(&bot, "Hello from the model").contains("Hello from the model"));
    // The database written through the stream.
    bot.type_line("a plain line for the record");
    let written = wait_until_async(WAIT, || async {
        recent_chat(&db)
            .iter()
            .any(|m| m == "a plain line for the record")
    })
    .await;
    assert!(
        written,
        "the chat line never reached SQLite: {:?}",
        recent_chat(&db)
    );
    // The bot's own database query (the PM shell's `stats`), audited through the stream.
    bot.type_line("/pm stats");
    let stats = said(&bot, "Total users seen");
    assert!(stats.starts_with("[pm] Now:"), "{stats}");

    // The admin commands, as the operator.
    let (ok, out) = rosey(&["plugin", "list"], &path, Some(Role::Operator));
    assert!(ok && out.contains("quotes"), "{out}");
    let (ok, out) = rosey(&["plugin", "reload", "quotes"], &path, Some(Role::Operator));
    assert!(ok, "{out}");
    let (ok, out) = rosey(&["status"], &path, Some(Role::Operator));
    assert!(
        ok && out.contains("rosey-db") && out.contains("event(s) waiting"),
        "{out}"
    );
    let (ok, out) = rosey(&["dlq", "list"], &path, Some(Role::Operator));
    assert!(ok && out.contains("empty"), "{out}");
    // A write rosey-db cannot apply goes to the dead letters, which the operator replays.
    let bot_client = connect_role(&nats, Role::Bot).await;
    let js = async_nats::jetstream::new(bot_client);
    js.publish(subjects::db::USER_JOINED, "{nope".into())
        .await
        .unwrap()
        .await
        .expect("the bot's write is stored");
    let mut listed = String::new();
    let dead = wait_until_async(WAIT, || {
        let (_, out) = rosey(&["dlq", "list"], &path, Some(Role::Operator));
        listed = out;
        let found = listed.contains(subjects::db::USER_JOINED);
        async move { found }
    })
    .await;
    assert!(dead, "no dead letter: {listed}");
    let (ok, out) = rosey(&["dlq", "replay", "--all"], &path, Some(Role::Operator));
    assert!(ok && out.contains("1 letter(s) replayed"), "{out}");
    // The web role's reads.
    let web = connect_role(&nats, Role::Web).await;
    let stats: Result<Value, _> = request_json(
        &web,
        subjects::db::RECENT_CHAT_GET,
        &json!({"limit": 10}),
        Duration::from_secs(5),
    )
    .await;
    assert!(stats.is_ok(), "{stats:?}");
    // rosey-web itself, logged in as the web role.
    let web = try_start_web_on(tempfile::tempdir().unwrap(), &path, |cmd| {
        login(cmd, Role::Web);
        cmd
    })
    .unwrap_or_else(|e| panic!("rosey-web did not start: {e}; {:?}", violations(&nats)));
    web_works_end_to_end(&web, &bot, &nats).await;

    // A second runtime finds the plugins' leases held and stands by (it read the holder's
    // name from the lease bucket as the runtime's user).
    let standby_dir = tempfile::tempdir().unwrap();
    let _standby = spawn("rosey-runtime", Role::Runtime, &path, standby_dir.path());
    let log = standby_dir.path().join("rosey-runtime.log");
    let stands_by = rosey_tests::wait_until(WAIT, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("already served by another runtime"))
    });
    assert!(
        stands_by,
        "the second runtime never stood by: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let v = violations(&nats);
    assert!(v.is_empty(), "permission violations: {v:#?}");
}

/// Publishes `refused` as `client` (then a subject it may publish, on the same connection) and
/// proves the spy never saw `refused` and the server logged the violation.
async fn assert_publish_refused(
    nats: &NatsServer,
    spy: &mut async_nats::Subscriber,
    role: Role,
    client: &async_nats::Client,
    refused: &str,
) {
    let grant = access::grant(role).unwrap();
    // rosey-llm publishes nothing but answers: the server's log is the proof then.
    let allowed = grant
        .publish
        .iter()
        .find(|p| p.starts_with("rosey.") || p.starts_with("$SRV"))
        .map(|p| p.replace(['*', '>'], "sentinel"));
    assert!(!grant.may_publish(refused), "{role} is granted {refused}");
    client
        .publish(refused.to_owned(), "{}".into())
        .await
        .unwrap();
    if let Some(allowed) = &allowed {
        client.publish(allowed.clone(), "{}".into()).await.unwrap();
    }
    client.flush().await.unwrap();
    while let Some(allowed) = &allowed {
        let msg = tokio::time::timeout(WAIT, spy.next())
            .await
            .expect("the spy saw nothing")
            .unwrap();
        assert_ne!(msg.subject.as_str(), refused, "{role} published {refused}");
        if msg.subject.as_str() == allowed.as_str() {
            break;
        }
    }
    let logged = format!("User \"{}\", Subject \"{refused}\"", role.user());
    let seen = wait_until_async(WAIT, || async {
        violations(nats)
            .iter()
            .any(|l| l.contains("Publish Violation") && l.contains(&logged))
    })
    .await;
    assert!(seen, "no violation logged for {logged}: {}", nats.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_refused_what_is_not_its_own() {
    let nats = server();
    let spy_client = connect_as(&nats, SPY, SPY).await;
    let mut spy = spy_client.subscribe(">").await.unwrap();
    spy_client.flush().await.unwrap();

    let cases: [(Role, &str); 9] = [
        // The bot may not administer plugins nor answer for rosey-db.
        (Role::Bot, subjects::runtime::PLUGINS_DISABLE),
        (Role::Bot, "rosey.db.kv.quotes.set"),
        // The plugins' runtime may not write into the database stream, nor touch it.
        (Role::Runtime, subjects::db::MESSAGE_LOG),
        (Role::Runtime, "$JS.API.STREAM.PURGE.ROSEY_DB"),
        (Role::Runtime, subjects::runtime::PLUGINS_DISABLE),
        // rosey-db may not make the bot talk.
        (Role::Db, "rosey.platform.console.send.chat"),
        (Role::Llm, subjects::events::MESSAGE),
        (Role::Web, "rosey.platform.console.send.kick"),
        (Role::Operator, "rosey.platform.console.send.chat"),
    ];
    for (role, refused) in cases {
        let client = connect_role(&nats, role).await;
        assert_publish_refused(&nats, &mut spy, role, &client, refused).await;
    }

    // Subscribing beyond the grant: the runtime may not read the database's writes, the bot
    // not the plugin admin subjects.
    for (role, subject) in [
        (Role::Runtime, subjects::db::MESSAGE_LOG),
        (Role::Bot, subjects::runtime::PLUGINS_LIST),
        (Role::Web, subjects::kv::ALL),
        // Nobody reads the answers to another's requests.
        (Role::Bot, "_INBOX.>"),
        (Role::Runtime, "_INBOX.rosey-operator.>"),
    ] {
        let client = connect_role(&nats, role).await;
        let _sub = client.subscribe(subject.to_owned()).await.unwrap();
        client.flush().await.unwrap();
        let logged = format!("User \"{}\", Subject \"{subject}\"", role.user());
        let seen = wait_until_async(WAIT, || async {
            violations(&nats)
                .iter()
                .any(|l| l.contains("Subscription Violation") && l.contains(&logged))
        })
        .await;
        assert!(
            seen,
            "no subscription violation for {logged}: {}",
            nats.log()
        );
    }

    // Without a user, or with a wrong password, nothing at all.
    let anonymous = async_nats::connect(nats.url()).await;
    assert!(anonymous.is_err(), "an anonymous connection was accepted");
    let wrong =
        async_nats::ConnectOptions::with_user_and_password(Role::Operator.user(), "guess".into())
            .connect(nats.url())
            .await;
    assert!(wrong.is_err(), "a wrong password was accepted");
}

/// `rosey nats-config` prints the block `docs/NATS_SETUP.md` shows, and nats-server runs it with
/// the passwords it names (defined here as variables of the file, as the environment would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rosey_nats_config_prints_the_documented_block_and_nats_server_runs_it() {
    let out = command("rosey").arg("nats-config").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let doc =
        std::fs::read_to_string(rosey_tests::workspace_dir().join("docs/NATS_SETUP.md")).unwrap();
    assert!(
        doc.contains(&format!("```\n{printed}```\n")),
        "docs/NATS_SETUP.md does not show what rosey nats-config prints"
    );
    let mut config = String::new();
    for &role in Role::ALL {
        config.push_str(&format!(
            "{}: \"{}\"\n",
            role.password_env(),
            password(role)
        ));
    }
    config.push_str(&printed);
    let nats = NatsServer::start_with_config(&config);
    for &role in Role::ALL {
        connect_role(&nats, role).await;
    }
    assert!(async_nats::connect(nats.url()).await.is_err());
}
