//! Finding plugin libraries and loading a fresh copy of one for each generation.
//!
//! abi_stable's `RootModule::load_from_*` caches the first module of a type for the life of
//! the process, so it cannot reload; `lib_header_from_path` + `init_root_module` loads a new
//! copy each time and still runs the version and layout checks. `dlopen` hands back the
//! already-loaded object for a path (or a hard link to a loaded inode) it has seen, so every
//! generation is loaded from a fresh copy under a unique name, written to a temporary name and
//! renamed into place. A mapped file is never written over (the process would die with
//! SIGBUS).
//!
//! Libraries are never unloaded: each generation keeps its code mapped (about 0.5 MB) and its
//! copy on disk until the process exits. Copies live in a per-run folder that is removed at
//! start (stale runs) and at exit; past `plugins.reload_copies_warn` copies the runtime logs a
//! suggestion to restart. The folder is never on a `noexec` mount (see [`copy_base`]).

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use rosey_plugin_api::ffi::{PluginModRef, INTERFACE_VERSION};
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use thiserror::Error;

/// Why a library could not become a plugin generation.
#[derive(Debug, Error)]
pub enum LoadError {
    /// No library file for the plugin in any of the folders searched.
    #[error("no library lib{name}.so in {}", dirs_list(.dirs))]
    NotFound {
        /// The plugin.
        name: String,
        /// Where it was looked for.
        dirs: Vec<PathBuf>,
    },
    /// The file could not be read or copied.
    #[error("cannot copy {}: {source}", path.display())]
    Io {
        /// The library file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is the same as the serving generation's.
    #[error("{} is unchanged", path.display())]
    Unchanged {
        /// The library file.
        path: PathBuf,
    },
    /// The dynamic loader or abi_stable's checks refused it.
    #[error("{} cannot be loaded: {summary}", path.display())]
    Library {
        /// The library file.
        path: PathBuf,
        /// The few lines that say what is wrong and what to do.
        summary: String,
    },
}

fn dirs_list(dirs: &[PathBuf]) -> String {
    // A folder that does not exist is the usual cause of a missing library; say so.
    dirs.iter()
        .map(|d| {
            if d.is_dir() {
                d.display().to_string()
            } else {
                format!("{} (folder does not exist yet)", d.display())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A plugin library loaded and checked, ready to construct instances.
#[derive(Clone)]
pub struct LoadedModule {
    /// The root module, once loaded into this process (a library only a plugin host process
    /// runs is never loaded here, so its mappings go away with the host).
    pub module: Option<PluginModRef>,
    /// The copy it was loaded from (a plugin host process loads the same file).
    pub copy: PathBuf,
    /// A hash of the file's content, to skip reloading identical builds.
    pub hash: u64,
}

/// The per-run folder that holds each generation's copy of its library.
#[derive(Debug)]
pub struct CopyDir {
    dir: PathBuf,
    seq: AtomicU64,
}

const COPY_DIR_PREFIX: &str = "rosey-runtime-";

impl CopyDir {
    /// Creates `<base>/rosey-runtime-<pid>`, removing folders of earlier runs whose process is
    /// gone.
    pub fn create(base: &Path) -> io::Result<CopyDir> {
        if let Ok(entries) = std::fs::read_dir(base) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(pid) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(COPY_DIR_PREFIX))
                    .and_then(|p| p.parse::<u32>().ok())
                else {
                    continue;
                };
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = base.join(format!("{COPY_DIR_PREFIX}{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(CopyDir {
            dir,
            seq: AtomicU64::new(0),
        })
    }

    /// How many copies this run has loaded (each stays mapped until exit).
    pub fn count(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Removes the folder (at exit; the copies stay mapped but are no longer needed on disk).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Picks the folder under which [`CopyDir`] keeps its copies: the configured one, or else the
/// first usable of the temporary folder, `$XDG_RUNTIME_DIR` and `~/.cache/rosey`. A folder on
/// a `noexec` mount (common for `/tmp` on hardened hosts) is not usable: every library copied
/// there would fail to load.
pub fn copy_base(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = configured {
        return usable(dir)
            .map(|()| dir.to_path_buf())
            .map_err(|why| format!("plugins.copy_directory {}: {why}", dir.display()));
    }
    let mut candidates = vec![std::env::temp_dir()];
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(home).join(".cache").join("rosey"));
    }
    first_usable(&candidates, usable)
}

/// The first of `candidates` that `check` accepts, or every reason they were refused.
fn first_usable(
    candidates: &[PathBuf],
    check: impl Fn(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let mut refused = Vec::new();
    for dir in candidates {
        match check(dir) {
            Ok(()) => return Ok(dir.clone()),
            Err(why) => {
                tracing::warn!(dir = %dir.display(), "not keeping plugin copies here: {why}");
                refused.push(format!("{}: {why}", dir.display()));
            }
        }
    }
    Err(format!(
        "no folder for plugin library copies ({}); set plugins.copy_directory to a folder on a mount that allows running code",
        refused.join("; ")
    ))
}

/// Whether libraries copied into `dir` can be loaded: it exists (or can be made) and is not on
/// a `noexec` mount.
fn usable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    let stats = nix::sys::statvfs::statvfs(dir).map_err(|e| format!("cannot inspect it: {e}"))?;
    if stats
        .flags()
        .contains(nix::sys::statvfs::FsFlags::ST_NOEXEC)
    {
        return Err("mounted noexec, so libraries there cannot be loaded".to_owned());
    }
    Ok(())
}

/// Where a plugin's library may be, in the order searched.
pub fn candidate_paths(dirs: &[PathBuf], name: &str) -> Vec<PathBuf> {
    dirs.iter()
        .map(|d| d.join(format!("lib{name}.so")))
        .collect()
}

/// The newest library for `name` among `dirs`.
pub fn find_library(dirs: &[PathBuf], name: &str) -> Result<PathBuf, LoadError> {
    candidate_paths(dirs, name)
        .into_iter()
        .filter_map(|p| {
            let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok()?;
            Some((modified, p))
        })
        .max_by_key(|(m, _)| *m)
        .map(|(_, p)| p)
        .ok_or_else(|| LoadError::NotFound {
            name: name.to_owned(),
            dirs: dirs.to_vec(),
        })
}

/// The folders to look in for libraries: `directory` itself, and when it holds plugin crates
/// (a source checkout), the workspace's `target/debug` and `target/release` (and those of
/// `CARGO_TARGET_DIR` when it is set).
pub fn library_dirs(directory: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![directory.to_path_buf()];
    let holds_crates = std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().join("Cargo.toml").is_file())
        })
        .unwrap_or(false);
    if holds_crates {
        let mut at = directory.canonicalize().ok();
        while let Some(dir) = at {
            let manifest = dir.join("Cargo.toml");
            let is_workspace = std::fs::read_to_string(&manifest)
                .map(|t| t.contains("[workspace]"))
                .unwrap_or(false);
            if is_workspace {
                dirs.push(dir.join("target").join("debug"));
                dirs.push(dir.join("target").join("release"));
                break;
            }
            at = dir.parent().map(Path::to_path_buf);
        }
        if let Some(target) = std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
            let target = PathBuf::from(target);
            dirs.push(target.join("debug"));
            dirs.push(target.join("release"));
        }
    }
    dirs
}

/// A content hash, to tell a new build from a touched file.
pub fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// Loads `src` as a new generation of `name` from a fresh copy; `Unchanged` when its content
/// hashes to `current` (unless `force`). With `open` false the copy is only made and checked
/// as an ELF file, for a plugin host process to load.
pub fn load(
    src: &Path,
    copies: &CopyDir,
    name: &str,
    current: Option<u64>,
    force: bool,
    open: bool,
) -> Result<LoadedModule, LoadError> {
    let io_err = |source| LoadError::Io {
        path: src.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(src).map_err(io_err)?;
    let hash = content_hash(&bytes);
    if !force && current == Some(hash) {
        return Err(LoadError::Unchanged {
            path: src.to_path_buf(),
        });
    }
    check_elf(&bytes).map_err(|problem| LoadError::Library {
        path: src.to_path_buf(),
        summary: format!("not a Rosey plugin library ({problem})"),
    })?;
    let seq = copies.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = copies.dir.join(format!(".lib{name}-{seq}.tmp"));
    let dst = copies.dir.join(format!("lib{name}-{seq}-{stamp}.so"));
    std::fs::write(&tmp, &bytes).map_err(io_err)?;
    std::fs::rename(&tmp, &dst).map_err(io_err)?;
    let module = if open {
        Some(open_copy(&dst, src, name)?)
    } else {
        None
    };
    Ok(LoadedModule {
        module,
        hash,
        copy: dst,
    })
}

/// Loads a library copy into this process (`src` names it in errors).
pub fn open_copy(copy: &Path, src: &Path, name: &str) -> Result<PluginModRef, LoadError> {
    lib_header_from_path(copy)
        .and_then(|header| header.init_root_module::<PluginModRef>())
        .map_err(|e| {
            tracing::debug!(plugin = name, "full loader report:\n{e}");
            LoadError::Library {
                path: src.to_path_buf(),
                summary: summarize(&e),
            }
        })
}

/// Checks that `bytes` is a whole 64-bit little-endian ELF shared object: `dlopen` accepts a
/// truncated file whose headers survived, and reading its missing pages later kills the
/// process with SIGBUS.
pub fn check_elf(bytes: &[u8]) -> Result<(), String> {
    let u16_at = |at: usize| -> Option<u64> {
        Some(u64::from(u16::from_le_bytes(
            bytes.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF file".to_owned());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    if u16_at(16) != Some(3) {
        return Err("not a shared library".to_owned());
    }
    let len = bytes.len() as u64;
    let truncated = || format!("truncated: {len} bytes do not hold every part the headers list");
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3A), u16_at(0x3C));
    let (Some(phoff), Some(phentsize), Some(phnum), Some(shoff), Some(shentsize), Some(shnum)) =
        (phoff, phentsize, phnum, shoff, shentsize, shnum)
    else {
        return Err(truncated());
    };
    let end_of = |off: u64, size: u64, n: u64| off.checked_add(size.checked_mul(n)?);
    if end_of(shoff, shentsize, shnum).is_none_or(|end| end > len)
        || end_of(phoff, phentsize, phnum).is_none_or(|end| end > len)
    {
        return Err(truncated());
    }
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).map_err(|_| truncated())?;
        let (Some(offset), Some(filesz)) = (u64_at(at + 8), u64_at(at + 32)) else {
            return Err(truncated());
        };
        if offset.checked_add(filesz).is_none_or(|end| end > len) {
            return Err(truncated());
        }
    }
    Ok(())
}

/// The few lines of a loader error that say what differs, and what to rebuild: the layout
/// checker's reports run to thousands of lines.
pub fn summarize(error: &LibraryError) -> String {
    let hint = format!(
        "rebuild the plugin against rosey-plugin-api {INTERFACE_VERSION} (the runtime's interface)"
    );
    match error {
        LibraryError::OpenError { .. } | LibraryError::GetSymbolError { .. } => {
            let text = first_lines(&error.to_string(), 3);
            format!("not a Rosey plugin library ({text})")
        }
        LibraryError::AbiInstability(_) => {
            let text = error.to_string();
            let total = text.lines().count();
            format!(
                "interface mismatch: {} [from a {total}-line layout report, shown in full at debug level]; {hint}",
                layout_differences(&text)
            )
        }
        LibraryError::IncompatibleVersionNumber { .. } => {
            format!(
                "interface version mismatch: {}; {hint}",
                first_lines(&error.to_string(), 3)
            )
        }
        LibraryError::RootModule { .. } => {
            format!(
                "its root module failed: {}",
                first_lines(&error.to_string(), 4)
            )
        }
        other => format!("{}; {hint}", first_lines(&other.to_string(), 4)),
    }
}

/// The `Error:` entries of a layout report with the type they concern and the expected and
/// found values: `LogLevel: too many variants (expected 5, found 6)`.
fn layout_differences(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let value_after = |from: usize, label: &str| -> Option<&str> {
        let at = lines[from..].iter().position(|l| *l == label)? + from;
        lines[at + 1..].iter().find(|l| !l.is_empty()).copied()
    };
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(what) = line.strip_prefix("Error:") else {
            continue;
        };
        let ty = lines[..i]
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("type:"))
            .unwrap_or("?");
        let mut entry = format!("{ty}: {}", what.trim());
        if let (Some(e), Some(f)) = (value_after(i, "Expected:"), value_after(i, "Found:")) {
            entry.push_str(&format!(" (expected {e}, found {f})"));
        }
        if !found.contains(&entry) {
            found.push(entry);
        }
        if found.len() == 3 {
            break;
        }
    }
    if found.is_empty() {
        first_lines(report, 3)
    } else {
        found.join("; ")
    }
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The root module's names, for diagnostics.
pub fn interface_name() -> &'static str {
    <PluginModRef as RootModule>::NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_acceptable_copy_folder_wins_and_refusals_are_explained() {
        let (a, b, c) = (
            PathBuf::from("/a"),
            PathBuf::from("/b"),
            PathBuf::from("/c"),
        );
        let only_b = |d: &Path| {
            if d == Path::new("/b") {
                Ok(())
            } else {
                Err("mounted noexec".to_owned())
            }
        };
        assert_eq!(
            first_usable(&[a.clone(), b, c.clone()], only_b),
            Ok(PathBuf::from("/b"))
        );
        let error = first_usable(&[a, c], only_b).unwrap_err();
        assert!(
            error.contains("/a: mounted noexec") && error.contains("/c: mounted noexec"),
            "{error}"
        );
        assert!(error.contains("plugins.copy_directory"), "{error}");
    }

    #[test]
    fn a_copy_folder_is_made_when_missing_and_refused_when_it_cannot_be() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("x").join("y");
        assert_eq!(usable(&missing), Ok(()));
        assert!(missing.is_dir());
        let file = root.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let error = usable(&file.join("sub")).unwrap_err();
        assert!(error.contains("cannot create it"), "{error}");
        let error = copy_base(Some(&file.join("sub"))).unwrap_err();
        assert!(error.starts_with("plugins.copy_directory "), "{error}");
    }

    #[test]
    fn layout_reports_shrink_to_their_errors() {
        let report = "Layout of expected type:\n    type:Other\n    type:LogLevel\n        variants:\"A;B;\"\n\nError:too many variants\nExpected:\n    5\nFound:\n    6\n";
        assert_eq!(
            layout_differences(report),
            "LogLevel: too many variants (expected 5, found 6)"
        );
        assert_eq!(layout_differences("odd\nreport"), "odd | report");
    }

    #[test]
    fn a_source_checkout_is_searched_in_its_target_folders_newest_first() {
        let ws = std::env::temp_dir().join(format!("rosey-rt-ws-{}", std::process::id()));
        let plugins = ws.join("plugins");
        std::fs::create_dir_all(plugins.join("quotes")).unwrap();
        std::fs::write(ws.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        std::fs::write(plugins.join("quotes/Cargo.toml"), "[package]\n").unwrap();
        let dirs = library_dirs(&plugins);
        let ws = ws.canonicalize().unwrap();
        assert_eq!(dirs[1], ws.join("target/debug"));
        assert_eq!(dirs[2], ws.join("target/release"));
        for d in &dirs[1..] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(dirs[2].join("libquotes.so"), b"old").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dirs[1].join("libquotes.so"), b"new").unwrap();
        assert_eq!(
            find_library(&dirs, "quotes").unwrap(),
            dirs[1].join("libquotes.so")
        );
        // A folder of libraries is searched alone.
        assert_eq!(library_dirs(&dirs[1]), vec![dirs[1].clone()]);
        std::fs::remove_dir_all(&ws).unwrap();
    }

    #[test]
    fn garbage_is_not_a_library() {
        let base = std::env::temp_dir().join(format!("rosey-rt-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let copies = CopyDir::create(&base).unwrap();
        let src = base.join("libjunk.so");
        std::fs::write(&src, b"definitely not ELF").unwrap();
        let err = load(&src, &copies, "junk", None, false, true)
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("not a Rosey plugin library"), "{text}");
        assert!(text.lines().count() == 1, "{text}");
        // The ELF check sees a truncated copy of a real library (this test binary).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(check_elf(&me[..me.len() / 2])
            .unwrap_err()
            .contains("truncated"));
        assert_eq!(check_elf(b"\x7fELF"), Err("not an ELF file".to_owned()));
        let hash = content_hash(b"definitely not ELF");
        assert!(matches!(
            load(&src, &copies, "junk", Some(hash), false, true),
            Err(LoadError::Unchanged { .. })
        ));
        assert!(matches!(
            find_library(std::slice::from_ref(&base), "absent"),
            Err(LoadError::NotFound { .. })
        ));
        assert_eq!(
            find_library(std::slice::from_ref(&base), "junk").unwrap(),
            src
        );
        copies.remove();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
