//! The in-memory job table over the WAL: admission, the dispatch queue, job
//! states, receipts and the per-workflow latency estimate.
//!
//! Invariants: a ticket is visible to clients only after its `Accepted` record is
//! durable; a job enters the dispatch queue only then; a job is `Done` in memory
//! only after its `Done` record is durable, and a `Done` job is never queued again.

use crate::intake::Submission;
use crate::metrics::Metrics;
use crate::wal::{Outcome, Pending, Record, Snapshot, Wal, WalError};
use havn_proto::{ComputeClass, JobPayload, JobState, SignedReceipt, WorkflowId, WorkflowRef};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Mean job latency assumed for a workflow before any of its jobs completed.
pub const DEFAULT_JOB_SECONDS: f64 = 10.0;
/// EWMA weight of the newest observation.
const EWMA_ALPHA: f64 = 0.2;

/// Where a job is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Ticket assigned, `Accepted` not yet durable (invisible to clients).
    Pending,
    /// Durably queued.
    Queued,
    /// Handed to execd.
    Running,
    /// Durable receipt.
    Done(Arc<SignedReceipt>),
    /// Failed for good.
    Failed(String),
}

/// Why [`State::resolve`] names no job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// No submitter used this id (or not the one named).
    Unknown,
    /// Several submitters used this id: the request must name one.
    Ambiguous,
}

/// Why [`State::receipt`] has no receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoReceipt {
    /// No such job id.
    UnknownJob,
    /// Queued or running.
    NotDone,
    /// Failed for good, with this reason.
    Failed(String),
}

impl Phase {
    /// Done or failed: the job will not change again.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Done(_) | Phase::Failed(_))
    }
}

/// One job. Only the compact postcard bytes of the payload are kept (the decoded
/// `JobPayload` is ~7 KB because its bounded strings are inline); the dispatcher
/// decodes them when it hands the job to execd.
#[derive(Debug, Clone)]
pub struct Job {
    /// The orchestrator's job id.
    pub job_id: String,
    /// Postcard bytes of the payload (for idempotence checks).
    pub body: Arc<[u8]>,
    /// The job's workflow (for the latency estimate when it finishes).
    pub workflow: WorkflowId,
    /// Its phase.
    pub phase: Phase,
    /// The client identity that submitted it (`None`: logged before owners were).
    pub owner: Option<Arc<str>>,
}

/// Hasher for the ticket-keyed map. Tickets are assigned by netd (sequential, never
/// chosen by a client), so a multiplicative hash is enough and much cheaper than the
/// default SipHash; maps keyed by client input (job ids) keep SipHash.
#[derive(Debug, Default, Clone, Copy)]
struct TicketHasher(u64);

impl std::hash::Hasher for TicketHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Debug, Default)]
struct Table {
    jobs: HashMap<u64, Job, std::hash::BuildHasherDefault<TicketHasher>>,
    /// (submitter, job id) → ticket: job ids are scoped per submitter (a job logged
    /// before owners were has the submitter "").
    by_job_id: HashMap<(Arc<str>, String), u64>,
    queue: VecDeque<u64>,
    terminal: VecDeque<u64>,
    next_ticket: u64,
    /// Pending + queued + running.
    active: usize,
    running: usize,
    completed: u64,
    ewma: HashMap<String, f64>,
    /// Measured drain rate: EWMA of the seconds between two finished jobs (any
    /// workflow, done or failed), and when the last one finished.
    drain: Option<f64>,
    last_finish: Option<std::time::Instant>,
    /// Artifacts a job's submitter may read beyond its outputs (challenge material).
    /// (CID, submitter) pairs: several submitters may be granted the same CID.
    grants: std::collections::HashSet<(String, Arc<str>)>,
    grant_order: VecDeque<(String, Arc<str>)>,
}

/// Most artifact grants kept (challenge material of submitters' own jobs).
const MAX_GRANTS: usize = 4096;

/// What the node can run (from execd's capability report) and its stake.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Highest class execd serves.
    pub compute_class: ComputeClass,
    /// Registered workflows.
    pub workflows: Vec<WorkflowRef>,
    /// The stake as StakeGuard last said it (unchecked on a development node).
    pub stake: Arc<crate::stake::StakeView>,
    /// The node key (hex), from attestd.
    pub node_key: Option<String>,
    /// This boot's payload key (X25519), from attestd: `privacy.enclave` jobs' inputs
    /// must be sealed to it.
    pub payload_key: Option<[u8; 32]>,
}

/// Why a job was refused (in the order the checks run).
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// 403.
    StakeInactive {
        /// Stake.
        stake: u64,
        /// Floor for the class.
        floor: u64,
        /// Why (not bonded, quarantined, unbonding, under the floor).
        why: String,
    },
    /// 503: the chain has not answered within the staleness bound.
    StakeUnknown {
        /// What is known.
        reason: String,
    },
    /// 404.
    UnknownWorkflow,
    /// 409.
    ChecksumMismatch,
    /// 409.
    ClassTooHigh {
        /// Node's class.
        node: ComputeClass,
    },
    /// 409: the job id is taken by a different payload.
    JobIdConflict(u64),
    /// 503: the node key is sealed (gate closed at boot): nothing can be signed.
    KeySealed,
    /// 429.
    QueueFull,
    /// 503.
    Wal(WalError),
}

/// Accepted (new or idempotent duplicate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admitted {
    /// Ticket.
    pub ticket: u64,
    /// Estimate.
    pub eta_seconds: u32,
    /// Whether this was an earlier ticket returned again.
    pub duplicate: bool,
}

/// Shared daemon state.
pub struct State {
    table: Mutex<Table>,
    wal: Wal,
    /// Wakes the dispatcher.
    pub work: Notify,
    /// Wakes long-polling status requests whenever a job becomes terminal.
    pub finished: Notify,
    /// Metrics.
    pub metrics: Metrics,
    /// Node info.
    pub node: NodeInfo,
    capacity: usize,
    retain_terminal: usize,
    /// Each receipt once it is durable (the mesh link gossips it).
    pub signed_receipts: tokio::sync::broadcast::Sender<Arc<havn_proto::SignedReceipt>>,
    /// Each signed heartbeat (the mesh link gossips it).
    pub signed_heartbeats: tokio::sync::broadcast::Sender<Arc<havn_proto::SignedHeartbeat>>,
    /// Set once netd is stopping: intake refuses new jobs (503), health says so.
    pub draining: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("node", &self.node).finish()
    }
}

/// Counts for heartbeats and gauges.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// Queued.
    pub queued: usize,
    /// Running.
    pub running: usize,
    /// Completed since start.
    pub completed: u64,
}

impl State {
    /// Builds the table from a replayed snapshot: jobs without an outcome are
    /// re-queued in ticket order (whether or not they had started).
    pub fn new(
        snapshot: &Snapshot,
        wal: Wal,
        node: NodeInfo,
        capacity: usize,
        retain_terminal: usize,
    ) -> Self {
        let mut t = Table {
            next_ticket: 1,
            ..Table::default()
        };
        for (ticket, lj) in &snapshot.jobs {
            let mut workflow = WorkflowId::new();
            let phase = match &lj.outcome {
                None => match postcard::from_bytes::<JobPayload>(&lj.body) {
                    Ok(p) => {
                        workflow = p.workflow.id;
                        t.queue.push_back(*ticket);
                        t.active = t.active.saturating_add(1);
                        Phase::Queued
                    }
                    Err(_) => Phase::Failed("undecodable payload in the WAL".into()),
                },
                Some(Outcome::Done(r)) => Phase::Done(Arc::new((**r).clone())),
                Some(Outcome::Failed(r)) => Phase::Failed(r.clone()),
            };
            let owner: Arc<str> = Arc::from(lj.owner.as_deref().unwrap_or(""));
            t.by_job_id.insert((owner, lj.job_id.clone()), *ticket);
            t.jobs.insert(
                *ticket,
                Job {
                    job_id: lj.job_id.clone(),
                    body: lj.body.clone(),
                    workflow,
                    phase,
                    owner: lj.owner.as_deref().map(Arc::from),
                },
            );
            t.next_ticket = t.next_ticket.max(ticket.saturating_add(1));
        }
        // The totals the log can rebuild survive a restart of netd.
        let metrics = Metrics::default();
        for lj in snapshot.jobs.values() {
            metrics
                .accepted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match &lj.outcome {
                Some(Outcome::Done(r)) => {
                    metrics
                        .completed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    metrics.energy_mj.fetch_add(
                        r.receipt.energy_estimate_mj,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
                Some(Outcome::Failed(why)) => {
                    metrics
                        .failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if crate::dispatch::is_timeout(why) {
                        metrics
                            .timed_out
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                None => {}
            }
        }
        t.terminal = snapshot.terminal.clone();
        Self {
            table: Mutex::new(t),
            wal,
            work: Notify::new(),
            finished: Notify::new(),
            metrics,
            node,
            capacity,
            retain_terminal,
            signed_receipts: tokio::sync::broadcast::channel(1024).0,
            signed_heartbeats: tokio::sync::broadcast::channel(16).0,
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half-updated in a
        // way that matters more than stopping would; keep serving.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The WAL.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Checks that need no lock (stake, workflow, checksum, class).
    pub fn check(&self, p: &Submission<'_>) -> Result<(), Refusal> {
        if self.node.node_key.is_none() {
            return Err(Refusal::KeySealed);
        }
        match self.node.stake.admit(p.class) {
            Ok(()) => {}
            Err(crate::stake::StakeRefusal::Inactive { stake, floor, why }) => {
                return Err(Refusal::StakeInactive { stake, floor, why })
            }
            Err(crate::stake::StakeRefusal::Unknown { reason }) => {
                return Err(Refusal::StakeUnknown { reason })
            }
        }
        let Some(w) = self
            .node
            .workflows
            .iter()
            .find(|w| w.id.as_str() == p.workflow_id)
        else {
            return Err(Refusal::UnknownWorkflow);
        };
        if w.checksum != p.checksum {
            return Err(Refusal::ChecksumMismatch);
        }
        if p.class > self.node.compute_class {
            return Err(Refusal::ClassTooHigh {
                node: self.node.compute_class,
            });
        }
        Ok(())
    }

    /// Admits a checked job: idempotent on job id, bounded, durable before return.
    pub async fn admit(&self, p: &Submission<'_>, client: &str) -> Result<Admitted, Refusal> {
        self.check(p)?;
        // One copy of the encoding, shared by the table, the WAL record and the
        // writer's shadow.
        let body: Arc<[u8]> = Arc::from(p.bytes.as_slice());
        let workflow = havn_proto::bounded::<{ havn_proto::MAX_WORKFLOW_ID }>(&p.workflow_id);
        enum Step {
            Duplicate { ticket: u64, pending: bool },
            New { ticket: u64, pending: Pending },
        }
        let step = {
            let mut t = self.lock();
            let key: (Arc<str>, String) = (Arc::from(client), p.job_id.to_string());
            if let Some(&ticket) = t.by_job_id.get(&key) {
                match t.jobs.get(&ticket) {
                    Some(j) if j.body == body => Step::Duplicate {
                        ticket,
                        pending: j.phase == Phase::Pending,
                    },
                    _ => return Err(Refusal::JobIdConflict(ticket)),
                }
            } else {
                if t.active >= self.capacity {
                    return Err(Refusal::QueueFull);
                }
                let ticket = t.next_ticket;
                t.next_ticket = ticket.saturating_add(1);
                t.active = t.active.saturating_add(1);
                let job_id = p.job_id.to_string();
                let owner = key.0.clone();
                t.by_job_id.insert(key, ticket);
                t.jobs.insert(
                    ticket,
                    Job {
                        job_id,
                        body: body.clone(),
                        workflow,
                        phase: Phase::Pending,
                        owner: Some(owner),
                    },
                );
                // Submitted under the lock: log order = ticket order.
                let pending = self.wal.submit(vec![
                    Record::Accepted {
                        ticket,
                        payload: body,
                    },
                    Record::Owner {
                        ticket,
                        client: client.to_string(),
                    },
                ]);
                Step::New { ticket, pending }
            }
        };
        let (ticket, pending) = match step {
            Step::Duplicate { ticket, pending } => {
                if pending {
                    // A barrier behind the original Accepted: when it resolves, that
                    // record's group commit has finished.
                    self.wal.commit(Vec::new()).await.map_err(Refusal::Wal)?;
                    if !self.lock().jobs.contains_key(&ticket) {
                        return Err(Refusal::Wal(WalError::Stopped));
                    }
                }
                return Ok(Admitted {
                    ticket,
                    eta_seconds: self.eta(&p.workflow_id),
                    duplicate: true,
                });
            }
            Step::New { ticket, pending } => (ticket, pending),
        };
        match pending.wait().await {
            Ok(()) => {
                let eta = {
                    let mut t = self.lock();
                    if let Some(j) = t.jobs.get_mut(&ticket) {
                        j.phase = Phase::Queued;
                    }
                    t.queue.push_back(ticket);
                    Self::eta_locked(&t, &p.workflow_id)
                };
                self.work.notify_one();
                Ok(Admitted {
                    ticket,
                    eta_seconds: eta,
                    duplicate: false,
                })
            }
            Err(e) => {
                let mut t = self.lock();
                if let Some(j) = t.jobs.remove(&ticket) {
                    let owner: Arc<str> = j.owner.clone().unwrap_or_else(|| Arc::from(""));
                    t.by_job_id.remove(&(owner, j.job_id));
                }
                t.active = t.active.saturating_sub(1);
                Err(Refusal::Wal(e))
            }
        }
    }

    fn eta_locked(t: &Table, workflow: &str) -> u32 {
        let mean = t.ewma.get(workflow).copied().unwrap_or(DEFAULT_JOB_SECONDS);
        // Jobs ahead (queued + running), plus this one. `as` saturates.
        ((t.active.max(1) as f64) * mean).ceil() as u32
    }

    /// ETA for a new job of `workflow` now.
    pub fn eta(&self, workflow: &str) -> u32 {
        Self::eta_locked(&self.lock(), workflow)
    }

    /// Seconds a client refused with 429 should wait: the time the backlog ahead of it
    /// takes to drain at the measured rate (seconds between finished jobs), or, before
    /// anything finished, at this workflow's mean latency. At least 1, at most an hour.
    pub fn retry_after(&self, workflow: &str) -> u64 {
        let t = self.lock();
        let per_job = t
            .drain
            .or_else(|| t.ewma.get(workflow).copied())
            .unwrap_or(DEFAULT_JOB_SECONDS);
        ((t.active.max(1) as f64 * per_job).ceil() as u64).clamp(1, 3600)
    }

    /// Takes the next queued job and marks it running; returns its ticket and the
    /// postcard bytes of its payload.
    pub fn next_job(&self) -> Option<(u64, Arc<[u8]>, Arc<str>)> {
        let mut t = self.lock();
        while let Some(ticket) = t.queue.pop_front() {
            let Some(j) = t.jobs.get_mut(&ticket) else {
                continue;
            };
            if j.phase != Phase::Queued {
                // Never dispatch a job that is done, failed or already running.
                continue;
            }
            let p = j.body.clone();
            let owner = j.owner.clone().unwrap_or_else(|| Arc::from(""));
            j.phase = Phase::Running;
            t.running = t.running.saturating_add(1);
            return Some((ticket, p, owner));
        }
        None
    }

    /// Puts a running job back at the head of the queue (execd went away, or a
    /// retryable refusal).
    pub fn requeue(&self, ticket: u64) {
        let mut t = self.lock();
        if let Some(j) = t.jobs.get_mut(&ticket) {
            if j.phase == Phase::Running {
                j.phase = Phase::Queued;
                t.running = t.running.saturating_sub(1);
                t.queue.push_front(ticket);
            }
        }
    }

    /// Marks a job finished after its record is durable; the first outcome wins.
    /// Returns false if the job was already terminal.
    pub fn finish(&self, ticket: u64, outcome: Outcome, latency: Duration) -> bool {
        let mut t = self.lock();
        let Some(j) = t.jobs.get_mut(&ticket) else {
            return false;
        };
        if j.phase.is_terminal() {
            return false;
        }
        let was_running = j.phase == Phase::Running;
        let wf = j.workflow.clone();
        let done = matches!(outcome, Outcome::Done(_));
        j.phase = match outcome {
            Outcome::Done(r) => Phase::Done(Arc::from(r)),
            Outcome::Failed(r) => Phase::Failed(r),
        };
        if was_running {
            t.running = t.running.saturating_sub(1);
        }
        t.active = t.active.saturating_sub(1);
        t.terminal.push_back(ticket);
        let now = std::time::Instant::now();
        if let Some(prev) = t.last_finish.replace(now) {
            // An idle node is not a slow one: a gap counts at most the job's latency.
            let gap = now
                .saturating_duration_since(prev)
                .as_secs_f64()
                .min(latency.as_secs_f64());
            t.drain = Some(match t.drain {
                Some(d) => EWMA_ALPHA * gap + (1.0 - EWMA_ALPHA) * d,
                None => gap,
            });
        }
        if done {
            t.completed = t.completed.saturating_add(1);
            let s = latency.as_secs_f64();
            // No key allocation once the workflow has an estimate.
            match t.ewma.get_mut(wf.as_str()) {
                Some(e) => *e = EWMA_ALPHA * s + (1.0 - EWMA_ALPHA) * *e,
                None => {
                    t.ewma.insert(wf.to_string(), s);
                }
            }
        }
        while t.terminal.len() > self.retain_terminal {
            if let Some(old) = t.terminal.pop_front() {
                if let Some(j) = t.jobs.remove(&old) {
                    let owner: Arc<str> = j.owner.clone().unwrap_or_else(|| Arc::from(""));
                    t.by_job_id.remove(&(owner, j.job_id));
                }
            }
        }
        drop(t);
        self.finished.notify_waiters();
        true
    }

    /// Waits until `ticket` is terminal, unknown, or `deadline` passes.
    pub async fn wait_terminal(&self, ticket: u64, deadline: Instant) {
        loop {
            // Registered before the check, so a finish in between is not missed.
            let notified = self.finished.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let settled = self
                .lock()
                .jobs
                .get(&ticket)
                .is_none_or(|j| j.phase.is_terminal());
            if settled {
                return;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Whether a ticket is done (durably).
    pub fn is_terminal(&self, ticket: u64) -> bool {
        self.lock()
            .jobs
            .get(&ticket)
            .is_some_and(|j| j.phase.is_terminal())
    }

    /// `(job_id, state)` of a ticket, as clients see it.
    pub fn status(&self, ticket: u64) -> Option<(String, JobState, Option<Arc<str>>)> {
        let t = self.lock();
        let j = t.jobs.get(&ticket)?;
        let s = match &j.phase {
            // A pending ticket was returned to nobody yet: report it queued.
            Phase::Pending | Phase::Queued => JobState::Queued,
            Phase::Running => JobState::Running,
            Phase::Done(_) => JobState::Done,
            Phase::Failed(r) => JobState::Failed {
                reason: havn_proto::bounded(r),
            },
        };
        Some((j.job_id.clone(), s, j.owner.clone()))
    }

    /// The receipt of `submitter`'s job `job_id`.
    pub fn receipt(&self, submitter: &str, job_id: &str) -> Result<Arc<SignedReceipt>, NoReceipt> {
        let t = self.lock();
        let key = (Arc::from(submitter), job_id.to_string());
        let ticket = t.by_job_id.get(&key).ok_or(NoReceipt::UnknownJob)?;
        match t.jobs.get(ticket).map(|j| &j.phase) {
            Some(Phase::Done(r)) => Ok(r.clone()),
            Some(Phase::Failed(why)) => Err(NoReceipt::Failed(why.clone())),
            Some(_) => Err(NoReceipt::NotDone),
            None => Err(NoReceipt::UnknownJob),
        }
    }

    /// Who submitted the job with this ticket (outer `None`: no such ticket; inner
    /// `None`: logged before owners were).
    pub fn owner_of_ticket(&self, ticket: u64) -> Option<Option<Arc<str>>> {
        self.lock().jobs.get(&ticket).map(|j| j.owner.clone())
    }

    /// The submitter of the job a request names by `job_id`: `submitter`'s when given,
    /// else the one submitter that used the id (job ids are scoped per submitter).
    pub fn resolve(&self, job_id: &str, submitter: Option<&str>) -> Result<Arc<str>, Resolve> {
        let t = self.lock();
        if let Some(s) = submitter {
            let key = (Arc::from(s), job_id.to_string());
            return if t.by_job_id.contains_key(&key) {
                Ok(key.0)
            } else {
                Err(Resolve::Unknown)
            };
        }
        let mut owners = t
            .by_job_id
            .keys()
            .filter(|(_, j)| j == job_id)
            .map(|(o, _)| o);
        match (owners.next(), owners.next()) {
            (None, _) => Err(Resolve::Unknown),
            (Some(o), None) => Ok(o.clone()),
            (Some(_), Some(_)) => Err(Resolve::Ambiguous),
        }
    }

    /// Whether `client` may read the artifact `cid` as a job's submitter: the outputs
    /// of one of its finished jobs, or challenge material served for one of them.
    pub fn may_read_artifact(&self, client: &str, cid: &str) -> bool {
        let Ok(want) = cid.parse::<havn_proto::Cid>() else {
            return false;
        };
        let t = self.lock();
        if t.grants.contains(&(cid.to_string(), Arc::from(client))) {
            return true;
        }
        // A scan of the retained jobs without allocation (32-byte compares).
        t.jobs.values().any(|j| {
            j.owner.as_deref() == Some(client)
                && matches!(&j.phase, Phase::Done(r) if r.receipt.outputs_cid == want)
        })
    }

    /// Lets the submitter of `job_id` read these artifacts (challenge material served
    /// for its job). Bounded: the oldest grants go first.
    pub fn grant_artifacts(&self, submitter: &str, job_id: &str, cids: &[String]) {
        let mut t = self.lock();
        let key = (Arc::from(submitter), job_id.to_string());
        let Some(owner) = t
            .by_job_id
            .get(&key)
            .and_then(|tk| t.jobs.get(tk))
            .and_then(|j| j.owner.clone())
        else {
            return;
        };
        for cid in cids {
            let pair = (cid.clone(), owner.clone());
            if t.grants.insert(pair.clone()) {
                t.grant_order.push_back(pair);
            }
        }
        while t.grant_order.len() > MAX_GRANTS {
            if let Some(old) = t.grant_order.pop_front() {
                t.grants.remove(&old);
            }
        }
    }

    /// Queue counts.
    pub fn counts(&self) -> Counts {
        let t = self.lock();
        Counts {
            queued: t.queue.len(),
            running: t.running,
            completed: t.completed,
        }
    }

    /// Time since `start`, for job latency.
    pub fn since(start: Instant) -> Duration {
        start.elapsed()
    }
}
