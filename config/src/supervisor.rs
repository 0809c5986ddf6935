//! Ties a service to the `rosey up` that started it, so that killing `rosey up` outright
//! (SIGKILL, the OOM killer) does not leave its services running on their own.
//!
//! `rosey up` names itself in [`SUPERVISOR_ENV`] when it starts a service. The service asks the
//! kernel for SIGTERM when its parent dies (Linux `PR_SET_PDEATHSIG`), which runs its ordinary
//! clean stop, and checks that the parent is still the one named: if `rosey up` died before the
//! request was made, the signal would never come.

/// The environment variable holding the pid of the `rosey up` that started this process.
pub const SUPERVISOR_ENV: &str = "ROSEY_SUPERVISOR_PID";

/// Why a supervised service cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The variable is not a pid.
    #[error("{SUPERVISOR_ENV}={0:?} is not a process id")]
    BadPid(String),
    /// The kernel refused the request.
    #[error("cannot ask to be stopped with `rosey up`: {0}")]
    Refused(String),
    /// `rosey up` is already gone.
    #[error("started by `rosey up` (pid {0}), which has already exited")]
    Gone(i32),
}

/// When started by `rosey up`, arranges to get SIGTERM when it dies; fails if it is already
/// gone. Does nothing for a process started any other way (by hand, by systemd).
pub fn follow_supervisor() -> Result<(), SupervisorError> {
    let Ok(value) = std::env::var(SUPERVISOR_ENV) else {
        return Ok(());
    };
    let pid: i32 = value
        .trim()
        .parse()
        .map_err(|_| SupervisorError::BadPid(value.clone()))?;
    follow(pid)
}

#[cfg(target_os = "linux")]
fn follow(pid: i32) -> Result<(), SupervisorError> {
    use nix::sys::signal::Signal;
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)
        .map_err(|e| SupervisorError::Refused(e.to_string()))?;
    // Checked after the request: a parent that died before it left us with another parent.
    if nix::unistd::getppid().as_raw() != pid {
        return Err(SupervisorError::Gone(pid));
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn follow(_pid: i32) -> Result<(), SupervisorError> {
    // No parent-death signal here: `rosey up` still stops its children when it exits normally.
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_parent_that_is_not_the_named_one_is_refused() {
        // Our parent is the test harness, not pid 1 or any pid we pick below.
        let not_parent = nix::unistd::getppid().as_raw() + 1;
        assert!(matches!(follow(not_parent), Err(SupervisorError::Gone(p)) if p == not_parent));
        // And the real parent is accepted (the request itself succeeds for any process).
        assert!(follow(nix::unistd::getppid().as_raw()).is_ok());
        // Leave the test process as it was.
        nix::sys::prctl::set_pdeathsig(None).unwrap();
    }
}
