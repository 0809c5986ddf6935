//! The sandbox a plugin's host process (`isolation: process`) puts itself in once its library
//! is loaded and before any plugin code runs: rlimits on memory, CPU time and open files;
//! Landlock denying every file write and every read outside the system library folders, every
//! TCP bind and connect, abstract Unix sockets and signals to processes outside the sandbox;
//! and a seccomp filter refusing new sockets, `connect`, `ptrace`, other processes' memory and
//! `execve`. Only the socket pair inherited from rosey-runtime stays open to it.
//!
//! Every part is a hard requirement: a kernel that lacks one makes [`apply`] fail, and the
//! host then refuses to run the plugin (no silent fallback to a weaker sandbox).

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use nix::sys::resource::{setrlimit, Resource};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The limits, from `plugins.limits` and `plugins.config.<name>.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_AS`, bytes.
    pub memory_bytes: u64,
    /// `RLIMIT_CPU`, seconds (the soft limit; SIGXCPU, then SIGKILL 2 s later).
    pub cpu_seconds: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
}

/// Why the sandbox could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// An rlimit could not be set.
    #[error("cannot set {what}: {source}")]
    Rlimit {
        /// Which limit.
        what: &'static str,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// Landlock is missing or refused the ruleset.
    #[error("Landlock: {0}")]
    Landlock(String),
    /// The seccomp filter could not be built or installed.
    #[error("seccomp: {0}")]
    Seccomp(String),
}

/// The Landlock ABI the ruleset needs (6: file system, TCP, signal and abstract socket
/// scoping).
const LANDLOCK_ABI: ABI = ABI::V6;

/// Folders a loaded plugin may still read: the system's libraries (the dynamic loader may
/// open one lazily, e.g. `libgcc_s` to unwind a panic) and the loader's cache.
fn readable() -> Vec<PathBuf> {
    [
        "/usr/lib",
        "/usr/lib64",
        "/lib",
        "/lib64",
        "/etc/ld.so.cache",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .collect()
}

/// Applies the whole sandbox to the calling process, which must be single-threaded (seccomp
/// and Landlock bind the calling thread and the threads it starts later).
pub fn apply(limits: &Limits) -> Result<(), SandboxError> {
    set_rlimits(limits)?;
    landlock()?;
    seccomp()?;
    Ok(())
}

fn set_rlimits(limits: &Limits) -> Result<(), SandboxError> {
    let set = |what, resource, soft: u64, hard: u64| {
        setrlimit(resource, soft, hard).map_err(|source| SandboxError::Rlimit { what, source })
    };
    set(
        "the address space limit",
        Resource::RLIMIT_AS,
        limits.memory_bytes,
        limits.memory_bytes,
    )?;
    set(
        "the CPU time limit",
        Resource::RLIMIT_CPU,
        limits.cpu_seconds,
        limits.cpu_seconds.saturating_add(2),
    )?;
    set(
        "the open files limit",
        Resource::RLIMIT_NOFILE,
        limits.open_files,
        limits.open_files,
    )?;
    // A crash must not leave a core file (nor may a plugin write any file at all).
    set("the core file limit", Resource::RLIMIT_CORE, 0, 0)?;
    set("the file size limit", Resource::RLIMIT_FSIZE, 0, 0)?;
    Ok(())
}

fn landlock() -> Result<(), SandboxError> {
    let err = |e: &dyn std::fmt::Display| SandboxError::Landlock(e.to_string());
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))
        .map_err(|e| err(&e))?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))
        .map_err(|e| err(&e))?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .map_err(|e| err(&e))?
        .create()
        .map_err(|e| err(&e))?
        .add_rules(path_beneath_rules(
            readable(),
            AccessFs::ReadFile | AccessFs::ReadDir,
        ))
        .map_err(|e| err(&e))?
        .restrict_self()
        .map_err(|e| err(&e))?;
    if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
        return Err(SandboxError::Landlock(format!(
            "the ruleset is not fully enforced ({:?})",
            status.ruleset
        )));
    }
    Ok(())
}

/// System calls a plugin never needs: new sockets (the host's only one is inherited),
/// reaching other processes, running programs.
const REFUSED_SYSCALLS: &[(&str, i64)] = &[
    ("socket", libc::SYS_socket),
    ("socketpair", libc::SYS_socketpair),
    ("connect", libc::SYS_connect),
    ("bind", libc::SYS_bind),
    ("listen", libc::SYS_listen),
    ("accept", libc::SYS_accept),
    ("accept4", libc::SYS_accept4),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
];

fn seccomp() -> Result<(), SandboxError> {
    let err = |e: &dyn std::fmt::Display| SandboxError::Seccomp(e.to_string());
    let rules: BTreeMap<i64, Vec<SeccompRule>> = REFUSED_SYSCALLS
        .iter()
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| err(&e))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| err(&e))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(&e))?;
    seccompiler::apply_filter(&program).map_err(|e| err(&e))
}
