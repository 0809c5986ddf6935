//! NATS users per role: `rosey nats-config`, and the per-run credentials `rosey up` gives the
//! nats-server it starts, each child and the admin commands run from the same folder.

use anyhow::{Context, Result};
use rosey_config::Config;
use rosey_plugin_api::access::{self, Password, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file, in `rosey up`'s state folder (`.rosey/`), holding the operator's credentials for
/// the current run (and every role's password, for a `rosey up` started again while this run's
/// nats-server still runs); mode 0600, removed when `rosey up` stops its server.
pub const OPERATOR_FILE: &str = "nats-operator.json";

/// The file, in the state folder, holding the nats-server configuration `rosey up` starts the
/// server with. It holds no password: each is `$ROSEY_NATS_<ROLE>_PASSWORD`, given in
/// nats-server's environment.
pub const SERVER_CONF: &str = "nats-server.conf";

/// `rosey nats-config`: the authorization block, passwords as environment references, for the
/// channels of `file` (one channel without it).
pub fn print_config(file: Option<&Path>) -> Result<()> {
    let config = match file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    print!("{}", authorization_block(&config)?);
    Ok(())
}

/// The authorization block for `config`'s channels (each further channel's stream granted by
/// name), passwords as environment references.
fn authorization_block(config: &Config) -> Result<String> {
    let streams =
        access::channel_streams(&config.platform.channel_names()).map_err(anyhow::Error::msg)?;
    access::authorization_block(&streams, |_| Password::FromEnv)
        .map_err(anyhow::Error::msg)
        .context("the contract's table has a row without a valid direction")
}

/// What the operator's file holds.
#[derive(Debug, Serialize, Deserialize)]
struct OperatorFile {
    user: String,
    password: String,
    /// Every role's password of the run, by role name.
    #[serde(default)]
    roles: BTreeMap<String, String>,
}

/// One run's random password per role.
#[derive(Debug, Clone)]
pub struct RunCredentials {
    passwords: BTreeMap<Role, String>,
}

impl RunCredentials {
    /// Fresh random passwords (24 bytes from the OS's generator each, in hex after a letter:
    /// nats-server parses an environment variable's value as a configuration value, and one
    /// starting with a digit would be read as a number).
    pub fn generate() -> Result<RunCredentials> {
        let mut passwords = BTreeMap::new();
        for &role in Role::ALL {
            let mut bytes = [0u8; 24];
            getrandom::getrandom(&mut bytes)
                .map_err(|e| anyhow::anyhow!("no random numbers from the OS: {e}"))?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            passwords.insert(role, format!("r{hex}"));
        }
        Ok(RunCredentials { passwords })
    }

    fn password(&self, role: Role) -> &str {
        self.passwords.get(&role).map_or("", String::as_str)
    }

    /// nats-server's environment: every role's password under the name its configuration
    /// reads.
    pub fn server_env(&self) -> Vec<(String, String)> {
        Role::ALL
            .iter()
            .map(|r| (r.password_env(), self.password(*r).to_owned()))
            .collect()
    }

    /// A child's environment: its role's user and password.
    pub fn child_env(&self, role: Role) -> Vec<(String, String)> {
        vec![
            (
                rosey_config::sections::nats::USER_ENV.to_owned(),
                role.user(),
            ),
            (
                rosey_config::sections::nats::PASSWORD_ENV.to_owned(),
                self.password(role).to_owned(),
            ),
        ]
    }

    /// Logs `config` in as `role`.
    pub fn apply(&self, role: Role, config: &mut Config) {
        config.nats.user = Some(role.user());
        config.nats.password = Some(rosey_config::Secret::new(self.password(role)));
        config.nats.token = None;
        config.nats.creds_file = None;
    }

    /// Writes the nats-server configuration for `config`'s channels (no secrets) into `state`.
    pub fn write_server_conf(&self, state: &Path, config: &Config) -> Result<PathBuf> {
        let block = authorization_block(config)?;
        let path = state.join(SERVER_CONF);
        let text = format!(
            "# Written by `rosey up` from the contract's table (rosey nats-config); the\n\
             # passwords come from nats-server's environment, fresh for each run.\n{block}"
        );
        write_private(&path, &text)?;
        Ok(path)
    }

    /// Writes the operator's credentials into `state` (mode 0600).
    pub fn write_operator_file(&self, state: &Path) -> Result<PathBuf> {
        let path = state.join(OPERATOR_FILE);
        let text = serde_json::to_string_pretty(&OperatorFile {
            user: Role::Operator.user(),
            password: self.password(Role::Operator).to_owned(),
            roles: self
                .passwords
                .iter()
                .map(|(r, p)| (r.as_str().to_owned(), p.clone()))
                .collect(),
        })?;
        write_private(&path, &text)?;
        Ok(path)
    }
}

/// The credentials of the run that left its operator's file in `state` (its nats-server still
/// running after that `rosey up` was killed), if the file is there and complete.
pub fn read_run_credentials(state: &Path) -> Result<Option<RunCredentials>> {
    let path = state.join(OPERATOR_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: OperatorFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an operator credentials file", path.display()))?;
    let mut passwords = BTreeMap::new();
    for &role in Role::ALL {
        match file.roles.get(role.as_str()) {
            Some(p) => passwords.insert(role, p.clone()),
            None => return Ok(None),
        };
    }
    Ok(Some(RunCredentials { passwords }))
}

/// Writes `text` to a file only its owner may read or write, created with that mode (never
/// readable by others, even for a moment).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// For the admin commands: when the configuration gives no NATS credentials (and the
/// environment none either), log in with the operator's file of a running `rosey up` in
/// `state`, if there is one.
pub fn use_operator_file(state: &Path, config: &mut Config) -> Result<()> {
    let nats = &config.nats;
    if nats.user.is_some() || nats.token.is_some() || nats.creds_file.is_some() {
        return Ok(());
    }
    let path = state.join(OPERATOR_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let file: OperatorFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an operator credentials file", path.display()))?;
    config.nats.user = Some(file.user);
    config.nats.password = Some(rosey_config::Secret::new(file.password));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_credentials_are_random_and_private() {
        let a = RunCredentials::generate().unwrap();
        let b = RunCredentials::generate().unwrap();
        for &role in Role::ALL {
            assert_eq!(a.password(role).len(), 49);
            assert!(a
                .password(role)
                .starts_with(|c: char| c.is_ascii_alphabetic()));
            assert_ne!(a.password(role), b.password(role));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = a.write_operator_file(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let conf =
            std::fs::read_to_string(a.write_server_conf(dir.path(), &Config::default()).unwrap())
                .unwrap();
        for &role in Role::ALL {
            assert!(
                !conf.contains(a.password(role)),
                "a password in the server's file"
            );
        }
        let again = read_run_credentials(dir.path()).unwrap().unwrap();
        for &role in Role::ALL {
            assert_eq!(again.password(role), a.password(role));
        }
        let mut config = Config::default();
        use_operator_file(dir.path(), &mut config).unwrap();
        assert_eq!(config.nats.user.as_deref(), Some("rosey-operator"));
        assert_eq!(
            config.nats.password.as_ref().map(|p| p.expose().to_owned()),
            Some(a.password(Role::Operator).to_owned())
        );
    }
}
