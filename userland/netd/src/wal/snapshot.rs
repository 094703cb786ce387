//! The jobs a log describes (what replay rebuilds and compaction rewrites).

use super::*;

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Signed receipt.
    Done(Box<SignedReceipt>),
    /// Failure reason.
    Failed(String),
}

/// A job as the log knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedJob {
    /// The orchestrator's job id.
    pub job_id: String,
    /// The payload, postcard-encoded.
    pub body: Arc<[u8]>,
    /// Whether it was handed to execd at least once.
    pub started: bool,
    /// Its end, if any (the first one logged).
    pub outcome: Option<Outcome>,
    /// Who submitted it (`None` in logs written before owners were recorded).
    pub owner: Option<String>,
}

/// The jobs a log describes, keyed by ticket, with the order terminal jobs ended.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Jobs by ticket.
    pub jobs: BTreeMap<u64, LoggedJob>,
    /// Terminal tickets, oldest first (for retention).
    pub terminal: VecDeque<u64>,
    /// Whether `apply` decodes payloads to fill `job_id` (replay does; the writer's
    /// compaction shadow does not need it).
    pub skip_ids: bool,
}

impl Snapshot {
    /// Applies one record. Returns a warning for records that do not fit.
    pub fn apply(&mut self, rec: &Record) -> Option<String> {
        match rec {
            Record::Accepted { ticket, payload } => {
                if self.jobs.contains_key(ticket) {
                    return Some(format!("duplicate Accepted for ticket {ticket}"));
                }
                let job_id = if self.skip_ids {
                    String::new()
                } else {
                    match postcard::from_bytes::<JobPayload>(payload) {
                        Ok(p) => p.job_id.to_string(),
                        Err(_) => return Some(format!("undecodable payload for ticket {ticket}")),
                    }
                };
                self.jobs.insert(
                    *ticket,
                    LoggedJob {
                        job_id,
                        body: payload.clone(),
                        started: false,
                        outcome: None,
                        owner: None,
                    },
                );
            }
            Record::Started { ticket } => match self.jobs.get_mut(ticket) {
                Some(j) => j.started = true,
                None => return Some(format!("Started for unknown ticket {ticket}")),
            },
            Record::Done { ticket, receipt } => {
                return self.finish(*ticket, Outcome::Done(receipt.clone()));
            }
            Record::Failed { ticket, reason } => {
                return self.finish(*ticket, Outcome::Failed(reason.clone()));
            }
            Record::Owner { ticket, client } => match self.jobs.get_mut(ticket) {
                Some(j) => j.owner = Some(client.clone()),
                None => return Some(format!("Owner for unknown ticket {ticket}")),
            },
        }
        None
    }

    /// [`Snapshot::apply`] for a record that is no longer needed: outcomes are moved
    /// in rather than cloned (the writer's shadow, after a group commit).
    pub fn apply_owned(&mut self, rec: Record) -> Option<String> {
        match rec {
            Record::Done { ticket, receipt } => self.finish(ticket, Outcome::Done(receipt)),
            Record::Failed { ticket, reason } => self.finish(ticket, Outcome::Failed(reason)),
            rec => self.apply(&rec),
        }
    }

    fn finish(&mut self, ticket: u64, outcome: Outcome) -> Option<String> {
        match self.jobs.get_mut(&ticket) {
            Some(j) if j.outcome.is_some() => Some(format!(
                "second outcome for ticket {ticket} ignored (the first is kept)"
            )),
            Some(j) => {
                j.outcome = Some(outcome);
                self.terminal.push_back(ticket);
                None
            }
            None => Some(format!("outcome for unknown ticket {ticket}")),
        }
    }

    /// Drops the oldest terminal jobs beyond `keep`.
    pub fn prune(&mut self, keep: usize) {
        while self.terminal.len() > keep {
            if let Some(t) = self.terminal.pop_front() {
                self.jobs.remove(&t);
            }
        }
    }

    /// Records that rebuild this snapshot.
    pub(crate) fn records(&self) -> impl Iterator<Item = Record> + '_ {
        // Accepted records in ticket order, then outcomes in the order they ended.
        let accepted = self.jobs.iter().flat_map(|(t, j)| {
            let owner = j.owner.as_ref().map(|c| Record::Owner {
                ticket: *t,
                client: c.clone(),
            });
            std::iter::once(Record::Accepted {
                ticket: *t,
                payload: j.body.clone(),
            })
            .chain(owner)
        });
        let ended = self.terminal.iter().filter_map(|t| {
            self.jobs
                .get(t)
                .and_then(|j| j.outcome.as_ref())
                .map(|o| match o {
                    Outcome::Done(r) => Record::Done {
                        ticket: *t,
                        receipt: r.clone(),
                    },
                    Outcome::Failed(reason) => Record::Failed {
                        ticket: *t,
                        reason: reason.clone(),
                    },
                })
        });
        accepted.chain(ended)
    }
}
