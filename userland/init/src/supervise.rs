//! The supervision loop: signals through a signalfd, reaping, whole-set restarts
//! with backoff, ordered shutdown.

use crate::plan::Plan;
use crate::spawn::{start_set, stop_set, Set};
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
        })
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
                            State::Up(set)
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
            let timeout = match &state {
                State::Up(_) => PollTimeout::NONE,
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
            let failed = self.reap(&mut state);
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

    /// Reaps every exited child; true if one of them was a daemon of the set.
    fn reap(&self, state: &mut State) -> bool {
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
                            failed = true;
                        }
                        None => tracing::debug!(pid = pid.as_raw(), status = ?st, "reaped"),
                    }
                }
            }
        }
    }
}
