//! The dispatcher: takes durably queued jobs in ticket order and sends each to
//! execd (one at a time: the channel is request/response and execd answers when
//! the job is done), logging `Started`, then `Done`/`Failed`. The execd client is
//! shared with the proof route ([`crate::api`]) through a FIFO mutex held for one
//! call at a time, so a `Prove` waits for at most the running job.
//!
//! A job is marked done only after its `Done` record is durable, and a done job is
//! never dispatched again. If the execd channel fails (execd died or restarted),
//! the job goes back to the head of the queue and netd reports
//! [`Fatal::ExecdLost`]: the daemon exits with [`crate::EXIT_EXECD_LOST`] so that
//! havn-init restarts it with fresh channels (a socketpair cannot be reconnected
//! from inside the sandbox). On restart the WAL re-queues the job; execd/attestd
//! return the same receipt for a job id already signed.

use crate::state::State;
use crate::wal::{Outcome, Record};
use crate::Fatal;
use havn_ipc::AsyncClient;
use havn_proto::ipc::RemoteError;
use havn_proto::ipc::{NetdExecRequest, NetdExecResponse, NetdExecd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// Longest wait between retries of a job execd refused for a transient reason.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until the execd channel fails.
pub async fn run(
    state: Arc<State>,
    execd: Arc<Mutex<AsyncClient<NetdExecd>>>,
    fatal: mpsc::UnboundedSender<Fatal>,
    alerts: crate::alerts::Alerter,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some((ticket, body, submitter)) = state.next_job() else {
            state.work.notified().await;
            continue;
        };
        // The table keeps only the compact postcard bytes; decode them straight into
        // the request (no copy of the ~7 KB decoded payload).
        let payload = match postcard::from_bytes::<havn_proto::JobPayload>(&body) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(ticket, error = %e, "undecodable payload in the job table");
                let why = "undecodable payload".to_string();
                record(&state, &fatal, ticket, Outcome::Failed(why), Instant::now());
                continue;
            }
        };
        let req = NetdExecRequest::Run {
            ticket_id: ticket,
            payload,
            submitter: havn_proto::bounded(&submitter),
        };
        let NetdExecRequest::Run { payload, .. } = &req else {
            continue;
        };
        // No per-job span (an allocation per job at info level): the events below
        // carry the ticket and job id themselves.
        let job_id = payload.job_id.as_str();
        let go_on = async {
            state.wal().append(Record::Started { ticket });
            let start = Instant::now();
            tracing::info!(ticket, job_id, workflow = %payload.workflow.id, "job dispatched to execd");
            // Held for this one call only; the answer is read before it is released.
            let answer = execd.lock().await.call(&req).await;
            match answer {
                Ok(NetdExecResponse::Done { ticket_id, receipt })
                    if ticket_id == ticket
                        && receipt.receipt.job_id == payload.job_id
                        && receipt.receipt.submitter.as_str() == &*submitter
                        && receipt.receipt.workflow_id == payload.workflow.id =>
                {
                    backoff = Duration::from_millis(100);
                    record(
                        &state,
                        &fatal,
                        ticket,
                        Outcome::Done(Box::new(receipt)),
                        start,
                    );
                    true
                }
                Ok(NetdExecResponse::Done { ticket_id, .. }) => {
                    tracing::error!(ticket, job_id, answered = ticket_id, "execd answered for another job");
                    let why = format!("execd answered for ticket {ticket_id}");
                    record(&state, &fatal, ticket, Outcome::Failed(why), start);
                    true
                }
                Ok(NetdExecResponse::Failed { error, reason, .. })
                    if matches!(
                        error,
                        RemoteError::GateClosed
                            | RemoteError::TpmUnavailable
                            | RemoteError::StorageFull
                    ) =>
                {
                    tracing::warn!(ticket, job_id, %error, %reason, backoff_ms = backoff.as_millis() as u64,
                        "execd refused for now; job re-queued");
                    if error == RemoteError::GateClosed {
                        alerts.raise(
                            crate::alerts::kind::GATE_CLOSED,
                            serde_json::json!({"reason": reason.as_str()}),
                        );
                    }
                    state.requeue(ticket);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    true
                }
                Ok(NetdExecResponse::Failed { error, reason, .. }) => {
                    let why = failure(error, &reason);
                    record(&state, &fatal, ticket, Outcome::Failed(why), start);
                    true
                }
                Ok(
                    NetdExecResponse::Capabilities(_)
                    | NetdExecResponse::Proof { .. }
                    | NetdExecResponse::Refused { .. }
                    | NetdExecResponse::Judged(_)
                    | NetdExecResponse::Diverged { .. }
                    | NetdExecResponse::Leaves(_),
                ) => {
                    let why = "execd answered Run out of turn".to_string();
                    record(&state, &fatal, ticket, Outcome::Failed(why), start);
                    true
                }
                Err(e) => {
                    state.requeue(ticket);
                    tracing::error!(ticket, job_id, error = %e, peer_restarted = e.is_peer_restart(),
                        "execd channel failed; job re-queued, netd exits for a restart");
                    let _ = fatal.send(Fatal::ExecdLost(e.to_string()));
                    false
                }
            }
        }
        .await;
        if !go_on || fatal.is_closed() {
            return;
        }
    }
}

/// The reason a job failed for good, as the WAL keeps it: execd's error, then its words.
pub(crate) fn failure(error: RemoteError, reason: &str) -> String {
    format!("{error}: {reason}")
}

/// Whether a failure reason says the job ran past its `timeout_ms` (execd's words).
pub fn is_timeout(why: &str) -> bool {
    why.contains("timeout_ms") && why.contains("exceeded")
}

/// Whether a reason [`failure`] wrote was for `error`.
pub(crate) fn failed_with(why: &str, error: RemoteError) -> bool {
    why.strip_prefix(&error.to_string())
        .is_some_and(|rest| rest.starts_with(": "))
}

/// How often an outcome that met a full disk is tried again.
const NO_SPACE_RETRY: Duration = Duration::from_secs(1);

/// Makes an outcome durable, then visible.
fn record(
    state: &Arc<State>,
    fatal: &mpsc::UnboundedSender<Fatal>,
    ticket: u64,
    outcome: Outcome,
    start: Instant,
) {
    let rec = match &outcome {
        Outcome::Done(r) => Record::Done {
            ticket,
            receipt: r.clone(),
        },
        Outcome::Failed(reason) => Record::Failed {
            ticket,
            reason: reason.clone(),
        },
    };
    let st = state.clone();
    let fatal = fatal.clone();
    let rt = tokio::runtime::Handle::current();
    // Runs on the WAL writer thread once the group is durable: no task wake-up.
    state.wal().submit_then(
        vec![rec],
        Box::new(move |r| match r {
            Ok(()) => {
                let done = matches!(outcome, Outcome::Done(_));
                let timed_out = matches!(&outcome, Outcome::Failed(w) if is_timeout(w));
                let energy_mj = match &outcome {
                    Outcome::Done(r) => r.receipt.energy_estimate_mj,
                    Outcome::Failed(_) => 0,
                };
                if let Outcome::Done(r) = &outcome {
                    // No receiver (no mesh) is fine.
                    let _ = st.signed_receipts.send(Arc::new((**r).clone()));
                }
                let latency = start.elapsed();
                if st.finish(ticket, outcome, latency) {
                    let m = &st.metrics;
                    if done {
                        m.completed.fetch_add(1, Ordering::Relaxed);
                        m.energy_mj.fetch_add(energy_mj, Ordering::Relaxed);
                        m.job.observe(latency);
                        tracing::info!(ticket, latency_ms = latency.as_millis() as u64, "job done");
                    } else {
                        m.failed.fetch_add(1, Ordering::Relaxed);
                        if timed_out {
                            m.timed_out.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::warn!(ticket, "job failed");
                    }
                }
            }
            Err(crate::wal::WalError::NoSpace) => {
                // The disk is full: the job stays running (never re-dispatched) with its
                // outcome held here, and is recorded once space is freed.
                tracing::warn!(
                    ticket,
                    "disk full: the job's outcome waits for space to be recorded"
                );
                rt.spawn(async move {
                    tokio::time::sleep(NO_SPACE_RETRY).await;
                    record(&st, &fatal, ticket, outcome, start);
                });
            }
            Err(e) => {
                let _ = fatal.send(Fatal::Wal(e.to_string()));
            }
        }),
    );
}
