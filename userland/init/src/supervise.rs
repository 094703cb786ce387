//! The supervision loop: signals through a signalfd, reaping, whole-set restarts
//! with backoff, ordered shutdown.

use crate::plan::Plan;
use crate::spawn::{audit, start_set, stop_set, Set};
use crate::{Backoff, InitError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

enum State {
    Up(Set),
    Down { restart_at: Instant },
}

/// Runs the set until SIGTERM/SIGINT.
pub struct Supervisor {
    plan: Plan,
    backoff: Backoff,
    stop_timeout: Duration,
    signals: SignalFd,
    audit_every: Option<Duration>,
    next_audit: Instant,
    /// A daemon stopped on a configuration error: stop instead of restarting.
    config_error: Option<InitError>,
}

impl Supervisor {
    /// Blocks SIGCHLD, SIGTERM, SIGINT and SIGHUP (children get an empty mask back
    /// before exec) and opens a signalfd for them.
    pub fn new(plan: Plan, backoff: Backoff, stop_timeout: Duration) -> Result<Self, InitError> {
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
            mask.add(s);
        }
        mask.thread_block().map_err(|source| InitError::Sys {
            what: "sigprocmask",
            source,
        })?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(|source| InitError::Sys {
            what: "signalfd",
            source,
        })?;
        Ok(Self {
            plan,
            backoff,
            stop_timeout,
            signals,
            audit_every: None,
            next_audit: Instant::now(),
            config_error: None,
        })
    }

    /// Self-audits the running set every `every` (`None` or zero: never): each
    /// daemon's `/proc/<pid>/exe` is hashed and attestd compares the digests with
    /// this boot's measurements ([`crate::spawn::audit`]).
    pub fn with_audit(mut self, every: Option<Duration>) -> Self {
        self.audit_every = every.filter(|d| !d.is_zero());
        self
    }

    /// Runs a due self-audit; true if the channel to attestd failed (the set is then
    /// restarted).
    fn audit_if_due(&mut self, state: &mut State) -> bool {
        let (State::Up(set), Some(every)) = (state, self.audit_every) else {
            return false;
        };
        if Instant::now() < self.next_audit {
            return false;
        }
        self.next_audit = Instant::now() + every;
        match audit(set) {
            Ok(v) if v.matched => {
                tracing::debug!(gate_open = v.gate_open, "self-audit matched");
                false
            }
            Ok(v) => {
                tracing::error!(
                    gate_open = v.gate_open,
                    "self-audit: a running daemon differs from its boot measurement"
                );
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "self-audit failed: restarting the set");
                true
            }
        }
    }

    /// The loop. Returns after an ordered shutdown.
    pub fn run(&mut self) -> Result<(), InitError> {
        let mut state = State::Down {
            restart_at: Instant::now(),
        };
        loop {
            if let State::Down { restart_at } = state {
                if Instant::now() >= restart_at {
                    state = match start_set(&self.plan) {
                        Ok(set) => {
                            tracing::info!("set up: attestd, execd, netd running");
                            // The first self-audit right away (attestd answers init
                            // while execd and netd are still connecting).
                            self.next_audit = Instant::now();
                            State::Up(set)
                        }
                        Err(e) if e.is_config() => {
                            tracing::error!(error = %e, "start failed on a configuration error: not retrying");
                            return Err(e);
                        }
                        Err(e) => {
                            let delay = self.backoff.delay(Duration::ZERO);
                            tracing::error!(error = %e, delay_ms = delay.as_millis() as u64, "start failed; retrying");
                            State::Down {
                                restart_at: Instant::now() + delay,
                            }
                        }
                    };
                }
            }
            let audit_failed = self.audit_if_due(&mut state);
            let timeout = match &state {
                State::Up(_) if audit_failed => PollTimeout::ZERO,
                State::Up(_) => match self.audit_every {
                    None => PollTimeout::NONE,
                    Some(_) => {
                        let ms = self
                            .next_audit
                            .saturating_duration_since(Instant::now())
                            .as_millis();
                        PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::NONE)
                    }
                },
                State::Down { restart_at } => {
                    let ms = restart_at
                        .saturating_duration_since(Instant::now())
                        .as_millis();
                    PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::NONE)
                }
            };
            let mut pfd = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            match poll(&mut pfd, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(source) => {
                    return Err(InitError::Sys {
                        what: "poll",
                        source,
                    })
                }
            }
            let mut shutdown = false;
            while let Ok(Some(info)) = self.signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => shutdown = true,
                    Ok(Signal::SIGHUP) => {
                        tracing::info!("SIGHUP ignored (restart havn-init to reload)")
                    }
                    _ => {}
                }
            }
            let failed = self.reap(&mut state) || audit_failed;
            if shutdown {
                tracing::info!("shutdown requested: stopping netd, execd, attestd");
                if let State::Up(mut set) = state {
                    stop_set(&mut set, self.stop_timeout);
                }
                let _ = self.reap(&mut State::Down {
                    restart_at: Instant::now(),
                });
                tracing::info!("shutdown complete");
                return Ok(());
            }
            if let Some(e) = self.config_error.take() {
                tracing::error!(error = %e, "not restarting: stopping the set");
                if let State::Up(mut set) = state {
                    stop_set(&mut set, self.stop_timeout);
                }
                let _ = self.reap(&mut State::Down {
                    restart_at: Instant::now(),
                });
                return Err(e);
            }
            if failed {
                if let State::Up(mut set) = state {
                    let uptime = set.started.elapsed();
                    stop_set(&mut set, self.stop_timeout);
                    let delay = self.backoff.delay(uptime);
                    tracing::warn!(
                        uptime_ms = uptime.as_millis() as u64,
                        delay_ms = delay.as_millis() as u64,
                        "restarting the whole set"
                    );
                    state = State::Down {
                        restart_at: Instant::now() + delay,
                    };
                }
            }
        }
    }

    /// Reaps every exited child; true if one of them was a daemon of the set. A
    /// daemon that exited with [`havn_config::EXIT_CONFIG`] is remembered in
    /// `self.config_error`.
    fn reap(&mut self, state: &mut State) -> bool {
        let mut failed = false;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return failed,
                Ok(st) => {
                    let Some(pid) = st.pid() else { continue };
                    let kind = match state {
                        State::Up(set) => set.forget(pid),
                        State::Down { .. } => None,
                    };
                    match kind {
                        Some(k) => {
                            tracing::warn!(daemon = k.binary(), pid = pid.as_raw(), status = ?st, "daemon exited");
                            if let WaitStatus::Exited(_, code) = st {
                                if code == i32::from(havn_config::EXIT_CONFIG) {
                                    self.config_error.get_or_insert(InitError::DaemonConfig {
                                        daemon: k.binary(),
                                        code,
                                    });
                                }
                            }
                            failed = true;
                        }
                        None => tracing::debug!(pid = pid.as_raw(), status = ?st, "reaped"),
                    }
                }
            }
        }
    }
}
