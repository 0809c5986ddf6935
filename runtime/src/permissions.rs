//! Which subjects a plugin may publish to, request on and subscribe to.
//!
//! The checks guard against mistakes, not malice: a plugin is native code in the runtime's
//! process and could do anything. They make a plugin's reach explicit in the configuration and
//! turn a wrong subject into a clear error instead of a silent side effect.

use rosey_config::PluginPermissions;
use rosey_plugin_api::access::covers;
use rosey_plugin_api::subjects;

/// Reply inboxes: a plugin may always answer a request it received.
const INBOX_ALL: &str = "_INBOX.>";

/// What one plugin may do on NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    publish: Vec<String>,
    subscribe: Vec<String>,
    request: Vec<String>,
}

/// Which kind of use a subject is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Publishing a message.
    Publish,
    /// Sending a request.
    Request,
    /// Subscribing.
    Subscribe,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Publish => "publish to",
            Access::Request => "request on",
            Access::Subscribe => "subscribe to",
        })
    }
}

impl Permissions {
    /// The grant for `plugin`: the configured lists when there are any, else the default
    /// (events in; chat and PM out; its own key-value storage, the read-only queries and LLM
    /// chat and status).
    /// Answering on reply inboxes is always allowed; commands are checked apart (a plugin may
    /// subscribe to its own commands and to commands no other plugin serves).
    pub fn for_plugin(plugin: &str, configured: Option<&PluginPermissions>) -> Self {
        let mut grant = match configured {
            Some(p) => Permissions {
                publish: p.publish.clone(),
                subscribe: p.subscribe.clone(),
                request: p.request.clone(),
            },
            None => Permissions {
                publish: vec![
                    subjects::platform::send_any_platform(subjects::platform::action::CHAT),
                    subjects::platform::send_any_platform(subjects::platform::action::PM),
                ],
                subscribe: vec![subjects::events::ALL.to_owned()],
                request: subjects::kv::plugin_all(plugin)
                    .into_iter()
                    .chain([
                        subjects::db::RECENT_CHAT_GET.to_owned(),
                        subjects::db::USER_COUNT_HISTORY_GET.to_owned(),
                        subjects::db::QUERY_CHANNEL_STATS.to_owned(),
                        subjects::db::QUERY_USER_STATS.to_owned(),
                        // rosey-llm's per-plugin budget is the guard on these.
                        subjects::llm::CHAT.to_owned(),
                        subjects::llm::STATUS.to_owned(),
                    ])
                    .collect(),
            },
        };
        grant.publish.push(INBOX_ALL.to_owned());
        grant
    }

    /// Only the publish patterns, for a plugin host process's own early check.
    pub fn publish_only(publish: Vec<String>) -> Self {
        Permissions {
            publish,
            subscribe: Vec::new(),
            request: Vec::new(),
        }
    }

    /// The subjects the plugin may publish to.
    pub fn publish_patterns(&self) -> &[String] {
        &self.publish
    }

    /// Whether `subject` (which may hold wildcards, for subscriptions) is allowed.
    pub fn allows(&self, access: Access, subject: &str) -> bool {
        let list = match access {
            Access::Publish => &self.publish,
            Access::Request => &self.request,
            Access::Subscribe => &self.subscribe,
        };
        list.iter().any(|pattern| covers(pattern, subject))
    }
}

/// Checks a subject's shape before it reaches NATS: not empty, no spaces or control
/// characters, no empty token, and wildcards only where `wildcards` allows them.
pub fn check_subject(subject: &str, wildcards: bool) -> Result<(), String> {
    if subject.is_empty() || subject.len() > 512 {
        return Err("a subject must be 1 to 512 characters".to_owned());
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{subject:?} contains whitespace or control characters"
        ));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(format!("{subject:?} has an empty token"));
        }
        let wild = *token == "*" || *token == ">";
        if wild && !wildcards {
            return Err(format!("{subject:?}: wildcards are not allowed here"));
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err(format!("{subject:?}: '>' must be the last token"));
        }
        if !wild && (token.contains('*') || token.contains('>')) {
            return Err(format!("{subject:?}: a wildcard must be a whole token"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grant() {
        let p = Permissions::for_plugin("quotes", None);
        assert!(p.allows(Access::Publish, "rosey.platform.cytube.send.chat"));
        assert!(p.allows(Access::Publish, "rosey.platform.console.send.pm"));
        assert!(p.allows(Access::Publish, "_INBOX.abc.1"));
        assert!(!p.allows(Access::Publish, "rosey.platform.cytube.send.kick"));
        assert!(!p.allows(Access::Publish, "rosey.db.message.log"));
        assert!(p.allows(Access::Subscribe, "rosey.events.message"));
        assert!(p.allows(Access::Subscribe, "rosey.events.>"));
        assert!(!p.allows(Access::Subscribe, "rosey.>"));
        assert!(!p.allows(Access::Subscribe, "rosey.commands.quote"));
        assert!(p.allows(Access::Request, "rosey.db.kv.quotes.get"));
        assert!(!p.allows(Access::Request, "rosey.db.kv.markov.get"));
        assert!(p.allows(Access::Request, "rosey.db.query.user_stats"));
        assert!(!p.allows(Access::Request, "rosey.db.maintenance.run"));
        assert!(p.allows(Access::Request, "rosey.llm.chat"));
        assert!(p.allows(Access::Request, "rosey.llm.status"));
        assert!(!p.allows(Access::Request, "rosey.llm.usage"));
    }

    #[test]
    fn configured_grant_replaces_default() {
        let cfg = PluginPermissions {
            publish: vec!["rosey.platform.*.send.>".into()],
            subscribe: vec![],
            request: vec![],
        };
        let p = Permissions::for_plugin("dj", Some(&cfg));
        assert!(p.allows(Access::Publish, "rosey.platform.cytube.send.playlist.add"));
        assert!(!p.allows(Access::Subscribe, "rosey.events.message"));
    }

    #[test]
    fn wildcard_subjects_need_a_wider_pattern() {
        assert!(covers("a.*", "a.b"));
        assert!(!covers("a.*", "a.>"));
        assert!(covers("a.>", "a.*"));
        assert!(!covers("a.b", "a.*"));
        assert!(!covers("a.>", "a"));
    }

    #[test]
    fn subject_shape() {
        assert!(check_subject("rosey.events.message", false).is_ok());
        assert!(check_subject("rosey.events.>", true).is_ok());
        assert!(check_subject("rosey.events.>", false).is_err());
        assert!(check_subject("rosey..x", true).is_err());
        assert!(check_subject("rosey.>.x", true).is_err());
        assert!(check_subject("a b", true).is_err());
        assert!(check_subject("", true).is_err());
        assert!(check_subject("a.b*", true).is_err());
        assert!(check_subject(&"x".repeat(600), true).is_err());
    }
}
