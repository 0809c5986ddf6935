//! `rosey plugin new NAME`: a working plugin crate, registered in the workspace, ready for
//! `cargo build` and live reload.

use anyhow::{bail, Context, Result};
use rosey_plugin_api::subjects::is_plugin_name;
use std::path::{Component, Path, PathBuf};

/// What `plugin new` created.
#[derive(Debug)]
pub struct Scaffolded {
    /// The new crate's folder.
    pub dir: PathBuf,
    /// Whether the workspace's member list was extended.
    pub registered: bool,
}

/// Finds the workspace root: the nearest folder upwards holding a `Cargo.toml` with a
/// `[workspace]` table.
pub fn find_workspace(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
        manifest
            .lines()
            .any(|l| l.trim() == "[workspace]")
            .then(|| dir.to_path_buf())
    })
}

/// A path from `from` (a folder) to `to`, relative when both are absolute and share a root.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return to.to_path_buf();
    }
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for part in &to_parts[common..] {
        out.push(part);
    }
    out
}

/// Creates `<workspace>/plugins/<name>` and adds it to the workspace members.
pub fn new_plugin(workspace: &Path, name: &str, api: Option<&Path>) -> Result<Scaffolded> {
    if !is_plugin_name(name) || name == "help" {
        bail!(
            "{name:?} cannot be a plugin name: use 1 to 32 characters of a-z, 0-9, '_' or '-' \
             (and not \"help\", which the runtime answers itself)"
        );
    }
    let workspace = workspace
        .canonicalize()
        .with_context(|| format!("cannot find the workspace {}", workspace.display()))?;
    let api = match api {
        Some(api) => api.to_path_buf(),
        None => workspace.join("plugin-api"),
    };
    let api = api.canonicalize().with_context(|| {
        format!(
            "cannot find the plugin-api crate at {} (pass --api PATH)",
            api.display()
        )
    })?;
    let dir = workspace.join("plugins").join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let api_path = relative(&dir, &api);
    let type_name: String = name
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let type_name = if type_name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("Plugin{type_name}")
    } else {
        type_name
    };
    let files = [
        ("Cargo.toml", cargo_toml(name, &api_path)),
        ("src/lib.rs", lib_rs(name, &type_name)),
        ("README.md", readme(name)),
    ];
    for (file, text) in files {
        std::fs::write(dir.join(file), text)
            .with_context(|| format!("cannot write {}", dir.join(file).display()))?;
    }
    let registered = register_member(&workspace, &format!("plugins/{name}"))?;
    Ok(Scaffolded { dir, registered })
}

/// Adds `member` to the root manifest's `members = [...]`; false when it is listed already or
/// the list cannot be found (the caller says what to add by hand).
fn register_member(workspace: &Path, member: &str) -> Result<bool> {
    let path = workspace.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if text.contains(&format!("\"{member}\"")) {
        return Ok(false);
    }
    let Some(start) = text.find("members = [") else {
        return Ok(false);
    };
    let Some(close) = text[start..].find(']').map(|i| start + i) else {
        return Ok(false);
    };
    let inner = text[start + "members = [".len()..close].trim_end();
    let entry = if inner.contains('\n') || inner.is_empty() {
        format!("\n    \"{member}\",\n")
    } else {
        format!(", \"{member}\"")
    };
    let separator = if inner.is_empty() || inner.ends_with(',') || !inner.contains('\n') {
        ""
    } else {
        ","
    };
    let head_end = start + "members = [".len() + inner.len();
    let updated = format!(
        "{}{}{}{}",
        &text[..head_end],
        separator,
        entry,
        &text[close..]
    );
    std::fs::write(&path, updated).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

fn cargo_toml(name: &str, api: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
description = "A Rosey plugin"
publish = false

[lib]
# cdylib: the library the runtime loads; rlib: so `cargo test` can call the logic directly.
crate-type = ["cdylib", "rlib"]

[dependencies]
rosey-plugin-api = {{ path = "{}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
"#,
        api.display()
    )
}

fn lib_rs(name: &str, ty: &str) -> String {
    format!(
        r#"//! The `{name}` plugin: answers `!{name}` and counts how often it was asked, keeping the
//! count across hot reloads.
//!
//! Edit `answer`, run `cargo build` in this folder, and the running runtime serves the new
//! code within a second, with the count carried over.
//!
//! `Setup` also says which channels the plugin serves (with the bot's name in each) and the
//! chat command prefix; `ctx.request_later` asks a slow service without making the other
//! messages wait (see docs/PLUGIN_GUIDE.md).

use rosey_plugin_api::sdk::prelude::*;
use serde::{{Deserialize, Serialize}};

/// The format version of the state handed from one build to the next.
const STATE_VERSION: u32 = 1;

/// The plugin's state: everything it remembers.
#[derive(Default, Serialize, Deserialize)]
pub struct {ty} {{
    asked: u64,
}}

/// The reply to `!{name} <text>` after `count` uses: plain logic, tested without NATS.
pub fn answer(user: &str, text: &str, count: u64) -> String {{
    if text.is_empty() {{
        format!("Hello, {{user}}! You are visitor number {{count}}.")
    }} else {{
        format!("{{user}} says: {{text}} (message {{count}})")
    }}
}}

impl Plugin for {ty} {{
    fn init(&mut self, _ctx: &Context, setup: Setup) -> Result<()> {{
        if let Some(saved) = &setup.saved_state {{
            if let Ok(Some(state)) = saved.decode_json::<{ty}>(STATE_VERSION) {{
                *self = state;
            }}
        }}
        Ok(())
    }}

    fn commands(&self) -> Vec<CommandSpec> {{
        vec![CommandSpec::new("{name}", "says hello and counts visitors")]
    }}

    fn on_message(&mut self, ctx: &Context, msg: Message) -> Result<()> {{
        if let Some(cmd) = msg.command().filter(|c| c.command == "{name}") {{
            self.asked += 1;
            ctx.reply(&cmd, answer(&cmd.user, &cmd.text, self.asked))?;
        }}
        Ok(())
    }}

    fn save_state(&mut self) -> Result<Option<SavedState>> {{
        SavedState::json(STATE_VERSION, self).map(Some)
    }}
}}

rosey_plugin!({ty});

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn greets_and_echoes() {{
        assert_eq!(answer("ann", "", 1), "Hello, ann! You are visitor number 1.");
        assert_eq!(answer("ann", "hi there", 2), "ann says: hi there (message 2)");
    }}
}}
"#
    )
}

fn readme(name: &str) -> String {
    format!(
        "# {name}\n\nA Rosey plugin. Build it with `cargo build` in this folder; a running \
         `rosey-runtime` with `{name}` in `plugins.enabled` loads the new build by itself. \
         Test its logic with `cargo test -p {name}`. See `docs/PLUGIN_GUIDE.md`.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/w/plugins/x"), Path::new("/w/plugin-api")),
            PathBuf::from("../../plugin-api")
        );
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/b/c")),
            PathBuf::from("c")
        );
    }

    #[test]
    fn members_are_added_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\n    \"a\",\n    \"b\",\n]\n",
        )
        .unwrap();
        assert!(register_member(dir.path(), "plugins/x").unwrap());
        assert!(!register_member(dir.path(), "plugins/x").unwrap());
        let text = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
        assert_eq!(
            text,
            "[workspace]\nmembers = [\n    \"a\",\n    \"b\",\n    \"plugins/x\",\n]\n"
        );
        std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        assert!(register_member(dir.path(), "plugins/y").unwrap());
        let text = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
        assert!(
            text.contains("members = [\n    \"plugins/y\",\n]"),
            "{text}"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Has Space", "../x", "help", "a.b"] {
            assert!(new_plugin(dir.path(), bad, None).is_err(), "{bad:?}");
        }
    }
}
