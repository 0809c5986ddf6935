//! Which process reads which secrets. Every process loads the whole file, but it resolves the
//! `<key>_env` / `<key>_file` secrets only of the parts its [`Role`] reads; every other secret
//! stays an unresolved reference ("environment variable `X`"), so a key meant for `rosey-llm`
//! never enters the bot's memory, and the bot starts without the variable.
//!
//! Adding a secret: give its section an `Option<Secret>` field (named after one of
//! [`crate::SECRET_KEYS`]), then, if its readers differ from those of the part it sits in, one
//! line in [`SECRET_READERS`].

/// A Rosey process, by the job it does; it decides which secrets the process resolves. The same
/// roles name who sends and who consumes each subject of the contract, and each role's NATS user
/// (`rosey_plugin_api::access`).
pub use rosey_plugin_api::access::Role;

/// Who reads the secrets under each key-path prefix; the longest matching prefix decides, and a
/// secret under none of them is resolved by every role.
pub const SECRET_READERS: &[(&str, &[Role])] = &[
    ("nats", Role::ALL),
    ("platform", &[Role::Bot]),
    ("plugins.config", &[Role::Runtime]),
    ("llm", &[Role::Llm]),
    ("web", &[Role::Web]),
];

/// Which secrets a load resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretScope {
    /// Every secret: for tools that check the whole file (`rosey config check`).
    All,
    /// Only the secrets this role reads ([`SECRET_READERS`]).
    Role(Role),
}

impl From<Role> for SecretScope {
    fn from(role: Role) -> Self {
        SecretScope::Role(role)
    }
}

impl SecretScope {
    /// Whether the secret at `key_path` (e.g. `llm.openai.api_key`) is resolved in this scope.
    pub fn resolves(self, key_path: &str) -> bool {
        let SecretScope::Role(role) = self else {
            return true;
        };
        readers(key_path).is_none_or(|readers| readers.contains(&role))
    }
}

/// The readers of the longest [`SECRET_READERS`] prefix of `key_path`, if any matches.
fn readers(key_path: &str) -> Option<&'static [Role]> {
    SECRET_READERS
        .iter()
        .filter(|(prefix, _)| is_under(key_path, prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, readers)| *readers)
}

/// Whether `key_path` is `prefix` or inside it (`a.b`, `a.b.c` and `a.b[0]` are under `a.b`).
fn is_under(key_path: &str, prefix: &str) -> bool {
    key_path
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_resolves_only_its_parts() {
        let bot = SecretScope::Role(Role::Bot);
        let llm = SecretScope::Role(Role::Llm);
        let runtime = SecretScope::Role(Role::Runtime);
        assert!(bot.resolves("platform.credentials.password"));
        assert!(bot.resolves("platform.channels[2].credentials.password"));
        assert!(!bot.resolves("llm.openai.api_key"));
        assert!(!runtime.resolves("llm.openai.api_key"));
        assert!(llm.resolves("llm.openai.api_key"));
        assert!(!llm.resolves("platform.channel_password"));
        assert!(runtime.resolves("plugins.config.quotes.token"));
        assert!(!bot.resolves("plugins.config.quotes.token"));
        for role in Role::ALL {
            assert!(SecretScope::Role(*role).resolves("nats.password"), "{role}");
        }
        assert!(SecretScope::All.resolves("llm.openai.api_key"));
        // A part nobody listed is read everywhere, as before roles existed.
        assert!(bot.resolves("somewhere.new.token"));
        // `platformx` is not under `platform`.
        assert!(llm.resolves("platformx.token"));
    }
}
