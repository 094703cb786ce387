//! A job's `timeout_ms`, enforced: a timer that raises the run's cancel flag.

use std::time::Duration;

/// A job's deadline: a timer thread that raises the run's cancel flag when the time is
/// up; dropping it disarms the timer.
pub struct Deadline {
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    disarm: Option<std::sync::mpsc::Sender<()>>,
}

impl Deadline {
    /// Starts the timer: the flag rises after `after` (at once if it is zero).
    pub fn arm(after: Duration) -> Self {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(after.is_zero()));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let f = flag.clone();
        let spawned = std::thread::Builder::new()
            .name("execd-deadline".into())
            .spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                    f.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the deadline timer; the job runs without one");
        }
        Self {
            flag,
            disarm: Some(tx),
        }
    }

    /// The flag to hand the run.
    pub fn flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.flag.clone()
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        // Wakes the timer thread, which then exits without raising the flag.
        drop(self.disarm.take());
    }
}
