//! Client roles: what a client certificate's identity may do (`[netd.roles]`).
//!
//! | route | who |
//! |---|---|
//! | `POST /job/accept`, `POST /artifact` | orchestrators |
//! | `GET /job/{ticket}` | the job's submitter, validators, operators |
//! | `GET /receipt/{job}` | the job's submitter, validators, operators |
//! | `GET /job/{job}/proof/{node}` | the job's submitter, validators |
//! | `GET /artifact/{cid}` | validators, operators; an orchestrator for its own jobs' outputs |
//! | `GET /metrics` | operators |
//! | `GET /health`, `/attest/*`, `/capabilities` | any client of the CA |

use havn_config::Roles;

/// The roles one client identity holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    /// May submit jobs and upload inputs.
    pub orchestrator: bool,
    /// May read every receipt, output and proof.
    pub validator: bool,
    /// May read metrics and every job's status.
    pub operator: bool,
}

impl Access {
    /// The roles `identity` holds under `roles`.
    pub fn of(identity: &str, roles: &Roles) -> Self {
        let has = |list: &[String]| list.iter().any(|i| i == identity);
        Self {
            orchestrator: has(&roles.orchestrators),
            validator: has(&roles.validators),
            operator: has(&roles.operators),
        }
    }

    /// Whether the client may read a job submitted by `owner` (status and receipt).
    pub fn reads_job(&self, client: &str, owner: Option<&str>) -> bool {
        self.validator || self.operator || (owner == Some(client) && self.orchestrator)
    }

    /// Whether the client may fetch a job's challenge material.
    pub fn reads_proof(&self, client: &str, owner: Option<&str>) -> bool {
        self.validator || (owner == Some(client) && self.orchestrator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_configured_identities() {
        let roles = Roles::default();
        let o = Access::of("orchestrator", &roles);
        assert_eq!(
            o,
            Access {
                orchestrator: true,
                ..Access::default()
            }
        );
        assert!(o.reads_job("orchestrator", Some("orchestrator")));
        assert!(!o.reads_job("orchestrator", Some("someone-else")));
        assert!(!o.reads_job("orchestrator", None));
        let v = Access::of("validator", &roles);
        assert!(v.reads_job("validator", Some("orchestrator")) && v.reads_proof("validator", None));
        let node = Access::of("node", &roles);
        assert_eq!(
            node,
            Access::default(),
            "the node's own certificate holds no role"
        );
    }
}
