//! Who may do what on the bus: the roles named in the registry's `flow` column and, derived
//! from the registry, each role's nats-server permissions and the `authorization` block that
//! gives them (`rosey nats-config` prints it; `rosey up` starts its nats-server with it).
//!
//! A row's flow is written `"bot → runtime, web"`: the roles before the arrow publish the
//! subject (send the request, perform the action), the roles after it subscribe to it (serve the
//! request). Besides the table, a role gets the infrastructure its process uses: reply inboxes,
//! answers to requests it received, the `$SRV` discovery subjects and the JetStream API calls on
//! the contract's streams ([`infrastructure`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::registry::{self, Kind, SubjectSpec};
use crate::subjects::{self, jetstream as js};

/// One Rosey process as NATS sees it: each runs as its own NATS user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `rosey-bot`: the platform connection.
    Bot,
    /// `rosey-db`: the database service.
    Db,
    /// `rosey-runtime`, and through it every plugin.
    Runtime,
    /// `rosey-web`: the status page and HTTP API.
    Web,
    /// `rosey-llm`: the LLM gateway.
    Llm,
    /// The `rosey` command's admin subcommands (and `rosey up`'s readiness probes).
    Operator,
}

impl Role {
    /// Every role, in the order of the generated block.
    pub const ALL: &'static [Role] = &[
        Role::Bot,
        Role::Db,
        Role::Runtime,
        Role::Web,
        Role::Llm,
        Role::Operator,
    ];

    /// The role's name in flows.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Bot => "bot",
            Role::Db => "db",
            Role::Runtime => "runtime",
            Role::Web => "web",
            Role::Llm => "llm",
            Role::Operator => "operator",
        }
    }

    /// The role a flow names, if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.as_str() == name)
    }

    /// The NATS user name of the role (`rosey-bot`, ...).
    pub fn user(self) -> String {
        format!("rosey-{}", self.as_str())
    }

    /// The environment variable the generated block reads the role's password from when no
    /// password is given (nats-server resolves `$NAME` from its environment).
    pub fn password_env(self) -> String {
        format!("ROSEY_NATS_{}_PASSWORD", self.as_str().to_ascii_uppercase())
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row's direction: who publishes the subject and who subscribes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The roles that publish (request, act).
    pub from: Vec<Role>,
    /// The roles that subscribe (serve).
    pub to: Vec<Role>,
}

/// Reads `"a, b → c"` (`->` accepted for `→`); every name must be a [`Role`], each side non-empty.
pub fn parse_flow(flow: &str) -> Result<Flow, String> {
    let (from, to) = flow
        .split_once('→')
        .or_else(|| flow.split_once("->"))
        .ok_or_else(|| format!("flow {flow:?} has no arrow (\"sender → receiver\")"))?;
    let side = |text: &str, what: &str| -> Result<Vec<Role>, String> {
        let roles = text
            .split(',')
            .map(str::trim)
            .map(|name| {
                Role::parse(name).ok_or_else(|| {
                    format!(
                        "flow {flow:?}: {name:?} is not a role (one of {})",
                        Role::ALL
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if roles.is_empty() {
            return Err(format!("flow {flow:?} names no {what}"));
        }
        Ok(roles)
    };
    Ok(Flow {
        from: side(from, "sender")?,
        to: side(to, "receiver")?,
    })
}

/// Placeholders that stand for several tokens (a write's name, `user.joined`), always last.
const MULTI_TOKEN_PLACEHOLDERS: [&str; 1] = ["<write>"];

/// A registry subject as a permission: each `<placeholder>` token becomes `*` (`>` for one
/// that stands for several tokens).
pub fn subject_pattern(subject: &str) -> String {
    subject
        .split('.')
        .map(|t| {
            if MULTI_TOKEN_PLACEHOLDERS.contains(&t) {
                ">"
            } else if t.starts_with('<') {
                "*"
            } else {
                t
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Families of subjects a process subscribes to (or requests on) with one wildcard: when a role
/// holds every row of a family, its grant names the family, as the process does.
const FAMILIES: [&str; 5] = [
    subjects::events::ALL,
    subjects::commands::ALL,
    "rosey.platform.*.send.>",
    subjects::kv::ALL,
    subjects::runtime::PLUGIN_ALL,
];

/// The prefix of a NATS user's reply inboxes, `_INBOX.<user>`: each process logged in as a user
/// takes its inboxes there (`rosey_config::connect`), and its grant lets it read those alone, so
/// no role can read the answers to another's requests.
pub fn inbox_prefix(user: &str) -> String {
    format!("_INBOX.{user}")
}

/// Whether `user` can be a subject token in [`inbox_prefix`] (no dots, spaces or wildcards).
pub fn is_inbox_token(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What one role may do; the strings are nats-server subject patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Subjects it may publish to (requests included).
    pub publish: BTreeSet<String>,
    /// Subjects it may subscribe to.
    pub subscribe: BTreeSet<String>,
    /// Whether it may answer the requests it receives (nats-server's `allow_responses`: one
    /// reply per request, to that request's reply subject only).
    pub allow_responses: bool,
}

impl Grant {
    /// Whether the grant lets the role publish `subject` (a literal subject).
    pub fn may_publish(&self, subject: &str) -> bool {
        self.publish.iter().any(|p| subjects::matches(p, subject))
    }

    /// Whether the grant lets the role subscribe to `subject` (wildcards allowed: every
    /// subject it matches must be granted).
    pub fn may_subscribe(&self, subject: &str) -> bool {
        self.subscribe.iter().any(|p| covers(p, subject))
    }
}

/// Whether every subject `subject` matches (it may hold wildcards) is matched by `pattern`.
pub fn covers(pattern: &str, subject: &str) -> bool {
    let mut pat = pattern.split('.');
    let mut sub = subject.split('.');
    loop {
        match (pat.next(), sub.next()) {
            (Some(">"), Some(s)) => return !s.is_empty(),
            (Some(_), Some(">")) => return false,
            (Some("*"), Some(s)) if !s.is_empty() => {}
            (Some(p), Some(s)) if p == s && !s.is_empty() && s != "*" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Drops the patterns another pattern of the set already covers.
fn without_covered(set: &mut BTreeSet<String>) {
    let all: Vec<String> = set.iter().cloned().collect();
    set.retain(|p| !all.iter().any(|q| q != p && covers(q, p)));
}

/// The JetStream API subject of `op` on one stream (`$JS.API.STREAM.INFO.ROSEY_DB`).
fn js_api(op: &str, name: &str) -> String {
    format!("$JS.API.{op}.{name}")
}

/// Creating a stream or bringing it to the contract's definition, as `ensure_streams` and the
/// runtime's lease bucket do: look it up, create it, update it.
fn ensure_stream(stream: &str) -> [String; 3] {
    [
        js_api("STREAM.INFO", stream),
        js_api("STREAM.CREATE", stream),
        js_api("STREAM.UPDATE", stream),
    ]
}

/// What a role's process needs besides the contract's rows: its reply inboxes, answering requests,
/// `$SRV` discovery and the JetStream API on the contract's streams. `(publish, subscribe)`.
pub fn infrastructure(role: Role, channel_streams: &[String]) -> (Vec<String>, Vec<String>) {
    let lease_stream = format!("KV_{}", js::LEASE_BUCKET);
    let consumer = format!("{}.{}", js::DB_STREAM, js::DB_CONSUMER);
    // Each further channel's stream (`ROSEY_DB_CH_<channel>`) is named one by one: a subject
    // cannot match a stream name's prefix, and a wildcard would let a role create any stream.
    let channel_consumers: Vec<String> = channel_streams
        .iter()
        .map(|stream| format!("{stream}.{}", js::DB_CONSUMER))
        .collect();
    let mut publish: Vec<String> = vec![];
    // Every process requests something (or publishes into JetStream, whose acks are replies).
    let mut subscribe = vec![format!("{}.>", inbox_prefix(&role.user()))];
    match role {
        Role::Bot => {
            // The bot creates the streams when it starts before rosey-db, then publishes writes.
            publish.extend(ensure_stream(js::DB_STREAM));
            publish.extend(ensure_stream(js::DLQ_STREAM));
            for stream in channel_streams {
                publish.extend(ensure_stream(stream));
            }
            subscribe.push(subjects::service::ALL.to_owned());
        }
        Role::Db => {
            publish.extend(ensure_stream(js::DB_STREAM));
            publish.extend(ensure_stream(js::DLQ_STREAM));
            for stream in channel_streams {
                publish.extend(ensure_stream(stream));
            }
            for consumer in std::iter::once(&consumer).chain(&channel_consumers) {
                publish.extend([
                    js_api("CONSUMER.INFO", consumer),
                    js_api("CONSUMER.CREATE", consumer),
                    js_api("CONSUMER.MSG.NEXT", consumer),
                    format!("$JS.ACK.{consumer}.>"),
                ]);
            }
            subscribe.push(subjects::service::ALL.to_owned());
        }
        Role::Runtime => {
            publish.extend(ensure_stream(&lease_stream));
            publish.extend([
                js_api("DIRECT.GET", &lease_stream),
                js_api("DIRECT.GET", &format!("{lease_stream}.>")),
                format!("$KV.{}.>", js::LEASE_BUCKET),
            ]);
            subscribe.push(subjects::service::ALL.to_owned());
        }
        Role::Llm => subscribe.push(subjects::service::ALL.to_owned()),
        Role::Web => {
            // The services view: discovery, the database backlog and the dead-letter count.
            publish.push(subjects::service::ALL.to_owned());
            publish.extend([
                js_api("STREAM.INFO", js::DB_STREAM),
                js_api("STREAM.INFO", js::DLQ_STREAM),
                js_api("CONSUMER.INFO", &consumer),
            ]);
            subscribe.push(subjects::service::ALL.to_owned());
        }
        Role::Operator => {
            // `rosey status`, `rosey dlq list|replay`: the replay publishes each letter again
            // on its write subject and deletes it from the dead-letter stream.
            publish.push(subjects::service::ALL.to_owned());
            publish.extend([
                js_api("STREAM.INFO", js::DB_STREAM),
                js_api("STREAM.INFO", js::DLQ_STREAM),
                js_api("CONSUMER.INFO", &consumer),
                js_api("STREAM.MSG.GET", js::DLQ_STREAM),
                js_api("STREAM.MSG.DELETE", js::DLQ_STREAM),
                // `rosey status` names the channel streams no configured channel uses (a
                // removed channel's): listing names reads nothing from any stream.
                "$JS.API.STREAM.NAMES".to_owned(),
            ]);
            publish.extend(subjects::db::WRITE_SUBJECTS.map(str::to_owned));
            publish.push(subject_pattern(subjects::db::CHANNEL_WRITE_PATTERN));
        }
    }
    (publish, subscribe)
}

/// `role`'s grant: the rows it sends or serves, then [`infrastructure`] (with the streams of the
/// deployment's further channels, see [`channel_streams`]).
pub fn grant_from(
    rows: &[SubjectSpec],
    role: Role,
    channel_streams: &[String],
) -> Result<Grant, String> {
    let mut grant = Grant::default();
    let mut flows = vec![];
    for row in rows {
        let flow = parse_flow(row.flow).map_err(|e| format!("{}: {e}", row.subject))?;
        flows.push((subject_pattern(row.subject), flow));
    }
    for ((pattern, flow), row) in flows.iter().zip(rows) {
        if flow.from.contains(&role) {
            grant.publish.insert(pattern.clone());
        }
        if flow.to.contains(&role) {
            grant.subscribe.insert(pattern.clone());
            // It serves this request (or action): it must be able to answer.
            grant.allow_responses |= matches!(row.kind, Kind::Request | Kind::Action);
        }
    }
    // A family wholly granted is granted as the family, the way processes subscribe to it.
    for family in FAMILIES {
        let members: Vec<&(String, Flow)> =
            flows.iter().filter(|(p, _)| covers(family, p)).collect();
        if members.is_empty() {
            continue;
        }
        for (set, side) in [(&mut grant.publish, true), (&mut grant.subscribe, false)] {
            let all = members.iter().all(|(_, f)| {
                if side {
                    f.from.contains(&role)
                } else {
                    f.to.contains(&role)
                }
            });
            if all {
                set.retain(|p| !covers(family, p));
                set.insert(family.to_owned());
            }
        }
    }
    let (publish, subscribe) = infrastructure(role, channel_streams);
    grant.publish.extend(publish);
    grant.subscribe.extend(subscribe);
    without_covered(&mut grant.publish);
    without_covered(&mut grant.subscribe);
    if matches!(
        role,
        Role::Bot | Role::Db | Role::Runtime | Role::Llm | Role::Web
    ) {
        // They answer `$SRV` discovery.
        grant.allow_responses = true;
    }
    Ok(grant)
}

/// `role`'s grant from the contract's table, for a deployment of one channel.
pub fn grant(role: Role) -> Result<Grant, String> {
    grant_from(&registry::all(), role, &[])
}

/// The streams of a deployment's channels after the first (which keeps the PRD's stream):
/// what [`authorization_block`] grants on top of a single channel's users.
pub fn channel_streams(channels: &[String]) -> Result<Vec<String>, String> {
    channels
        .iter()
        .skip(1)
        .map(|channel| {
            js::channel_stream(channel)
                .ok_or_else(|| format!("{channel:?} cannot name a channel's stream"))
        })
        .collect()
}

/// How long after a request its answer may still be sent (`allow_responses.expires`).
pub const RESPONSE_WINDOW: &str = "10m";

/// How the generated block gives a role's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// `$ROSEY_NATS_<ROLE>_PASSWORD`: nats-server reads it from its environment at start.
    FromEnv,
    /// The password itself (a configuration's secret, or `rosey up`'s per-run one).
    Literal(String),
}

/// A quoted string in nats-server's configuration syntax.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One subject a line, so a review reads the grant like a list.
fn list(items: &BTreeSet<String>) -> String {
    let inner: Vec<String> = items
        .iter()
        .map(|s| format!("        {}", quoted(s)))
        .collect();
    format!("[\n{}\n      ]", inner.join(",\n"))
}

/// The nats-server (2.9) `authorization` block: one user per role with its grant. Anything not
/// granted, and any connection without a user, is refused.
pub fn authorization_block(
    channel_streams: &[String],
    password: impl Fn(Role) -> Password,
) -> Result<String, String> {
    let rows = registry::all();
    let mut out = String::from("authorization {\n  users = [\n");
    for &role in Role::ALL {
        let grant = grant_from(&rows, role, channel_streams)?;
        let pass = match password(role) {
            Password::FromEnv => format!("${}", role.password_env()),
            Password::Literal(p) => quoted(&p),
        };
        let _ = writeln!(out, "    # {role}");
        let _ = writeln!(
            out,
            "    {{user: {}, password: {pass}, permissions: {{",
            quoted(&role.user())
        );
        if grant.publish.is_empty() {
            // An empty allow list would allow everything: deny instead (answers to the
            // requests it receives still go through `allow_responses`).
            let _ = writeln!(out, "      publish: {{deny: [\">\"]}}");
        } else {
            let _ = writeln!(out, "      publish: {{allow: {}}}", list(&grant.publish));
        }
        let _ = writeln!(
            out,
            "      subscribe: {{allow: {}}}",
            list(&grant.subscribe)
        );
        if grant.allow_responses {
            // nats-server's default lets an answer come for 2 minutes; a slow LLM provider
            // with retries can take longer than that, and the requester still waits.
            let _ = writeln!(
                out,
                "      allow_responses: {{max: 1, expires: \"{RESPONSE_WINDOW}\"}}"
            );
        }
        out.push_str("    }}\n");
    }
    out.push_str("  ]\n}\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_parse_into_roles() {
        let f = parse_flow("bot, runtime → db").unwrap();
        assert_eq!(f.from, vec![Role::Bot, Role::Runtime]);
        assert_eq!(f.to, vec![Role::Db]);
        assert_eq!(parse_flow("web -> bot").unwrap().from, vec![Role::Web]);
        for bad in [
            "bot → any",
            "plugin → db",
            "bot db",
            "→ db",
            "bot →",
            "bot, → db",
        ] {
            assert!(parse_flow(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_row_of_the_contract_names_known_roles() {
        for row in registry::all() {
            if let Err(e) = parse_flow(row.flow) {
                panic!(
                    "{}: {e}: write its direction with the roles of access::Role",
                    row.subject
                );
            }
        }
    }

    #[test]
    fn a_row_without_a_known_direction_fails_the_derivation() {
        let mut rows = registry::all();
        rows[0].flow = "bot → any";
        let err = grant_from(&rows, Role::Bot, &[]).unwrap_err();
        assert!(err.contains("\"any\" is not a role"), "{err}");
    }

    /// Every row is granted to its senders and receivers and to nobody else.
    #[test]
    fn every_subject_is_granted_exactly_to_its_flow() {
        let grants: Vec<(Role, Grant)> =
            Role::ALL.iter().map(|&r| (r, grant(r).unwrap())).collect();
        for row in registry::all() {
            let flow = parse_flow(row.flow).unwrap();
            // A concrete subject of the row, placeholders filled in.
            let subject = row
                .subject
                .split('.')
                .map(|t| if t.starts_with('<') { "x" } else { t })
                .collect::<Vec<_>>()
                .join(".");
            for (role, grant) in &grants {
                let publishes = flow.from.contains(role)
                    // The operator replays dead letters on their write subjects.
                    || (*role == Role::Operator && row.kind == Kind::Write && row.subject != subjects::db::DLQ);
                assert_eq!(
                    grant.may_publish(&subject),
                    publishes,
                    "{role} publishing {subject} ({})",
                    row.flow
                );
                assert_eq!(
                    grant.may_subscribe(&subject),
                    flow.to.contains(role),
                    "{role} subscribing to {subject} ({})",
                    row.flow
                );
            }
        }
    }

    #[test]
    fn wildcard_subscriptions_the_processes_make_are_granted() {
        let bot = grant(Role::Bot).unwrap();
        assert!(bot.may_subscribe("rosey.platform.console.send.>"));
        assert!(!bot.may_publish("rosey.platform.console.send.chat"));
        assert!(!bot.may_publish(subjects::runtime::PLUGINS_DISABLE));
        let runtime = grant(Role::Runtime).unwrap();
        assert!(runtime.may_subscribe(subjects::events::ALL));
        assert!(runtime.may_publish("rosey.db.kv.quotes.get"));
        assert!(!runtime.may_publish(subjects::db::MESSAGE_LOG));
        assert!(!runtime.may_subscribe(subjects::db::MESSAGE_LOG));
        let db = grant(Role::Db).unwrap();
        assert!(db.may_subscribe(subjects::kv::ALL));
        assert!(db.may_publish("$JS.ACK.ROSEY_DB.rosey-db.1.2.3.4.5.6.7"));
        assert!(!db.may_publish("rosey.platform.console.send.chat"));
        assert!(runtime.may_publish("$KV.rosey_runtime_leases.quotes"));
        assert!(!bot.may_publish("$JS.API.STREAM.DELETE.ROSEY_DB"));
        assert!(!runtime.may_publish("$JS.API.STREAM.PURGE.ROSEY_DB"));
        // Each role reads its own replies only.
        assert!(bot.may_subscribe("_INBOX.rosey-bot.abc.*"));
        assert!(!bot.may_subscribe("_INBOX.>"));
        assert!(!bot.may_subscribe("_INBOX.rosey-operator.abc.*"));
    }

    /// A family is granted whole only to a role that holds all of it: an event the runtime
    /// must not see leaves it the single events, and its `rosey.events.>` subscription refused.
    #[test]
    fn a_family_partly_granted_is_granted_row_by_row() {
        let mut rows = registry::all();
        let own = rows
            .iter_mut()
            .find(|r| r.subject == subjects::events::BOT_STATUS)
            .unwrap();
        own.flow = "bot → web";
        let runtime = grant_from(&rows, Role::Runtime, &[]).unwrap();
        assert!(!runtime.may_subscribe(subjects::events::ALL));
        assert!(runtime.may_subscribe(subjects::events::MESSAGE));
        assert!(!runtime.may_subscribe(subjects::events::BOT_STATUS));
        let web = grant_from(&rows, Role::Web, &[]).unwrap();
        assert!(web.may_subscribe(subjects::events::ALL));
    }

    #[test]
    fn covering_follows_nats_wildcards() {
        assert!(covers("rosey.platform.*.*", "rosey.platform.*.error"));
        assert!(covers("rosey.events.>", "rosey.events.>"));
        assert!(covers("rosey.events.>", "rosey.events.user.*"));
        assert!(!covers("rosey.events.*", "rosey.events.>"));
        assert!(!covers("rosey.platform.*.*", "rosey.platform.*.send.chat"));
        assert!(!covers("rosey.db.kv.quotes.>", "rosey.db.kv.*.get"));
    }

    #[test]
    fn the_block_names_every_role_once_with_its_password() {
        let block = authorization_block(&[], |r| match r {
            Role::Bot => Password::Literal("p\"w".into()),
            _ => Password::FromEnv,
        })
        .unwrap();
        for role in Role::ALL {
            assert_eq!(
                block.matches(&format!("user: \"{}\"", role.user())).count(),
                1
            );
        }
        assert!(block.contains(r#"password: "p\"w""#));
        assert!(block.contains("password: $ROSEY_NATS_DB_PASSWORD"));
        assert!(block.starts_with("authorization {"));
        // Balanced braces and brackets.
        let depth = block.chars().fold(0i32, |d, c| match c {
            '{' | '[' => d + 1,
            '}' | ']' => d - 1,
            _ => d,
        });
        assert_eq!(depth, 0);
    }

    #[test]
    fn further_channels_streams_are_granted_by_name_only() {
        let streams = channel_streams(&["lounge".into(), "second".into()]).unwrap();
        assert_eq!(streams, vec!["ROSEY_DB_CH_second".to_owned()]);
        let rows = registry::all();
        let bot = grant_from(&rows, Role::Bot, &streams).unwrap();
        assert!(bot.may_publish("$JS.API.STREAM.CREATE.ROSEY_DB_CH_second"));
        assert!(!bot.may_publish("$JS.API.STREAM.CREATE.ROSEY_DB_CH_third"));
        assert!(!bot.may_publish("$JS.API.STREAM.CREATE.ANYTHING"));
        let db = grant_from(&rows, Role::Db, &streams).unwrap();
        assert!(db.may_publish("$JS.API.CONSUMER.CREATE.ROSEY_DB_CH_second.rosey-db"));
        assert!(!db.may_publish("$JS.API.CONSUMER.CREATE.OTHER.rosey-db"));
        // One channel: no stream beyond the contract's.
        let single = grant_from(&rows, Role::Bot, &[]).unwrap();
        assert!(!single.may_publish("$JS.API.STREAM.CREATE.ROSEY_DB_CH_second"));
        assert!(channel_streams(&["lounge".into(), "bad name".into()]).is_err());
    }
}
