//! Parsing `POST /job/accept` bodies into what admission needs, without building
//! the decoded [`JobPayload`] (about 6 KB in memory, because its bounded strings and
//! input list are inline) on the hot path.
//!
//! The fast path deserialises the JSON into [`PayloadView`], a borrowed mirror of
//! `JobPayload` with the same fields in the same order, checks the same bounds, and
//! postcard-encodes the view. postcard writes a `&str` exactly as a
//! `heapless::String` and a slice exactly as a `heapless::Vec`, so the bytes are the
//! canonical encoding of the `JobPayload` the slow path would have built (a test
//! checks this on generated payloads). Any body the fast path refuses goes through
//! the full `JobPayload` parse, which names the offending field in its error, so
//! bad input gets exactly the answer it got before.

use havn_proto::{
    ComputeClass, Hash32, InputArtifact, JobPayload, PrivacyFlags, MAX_INPUTS, MAX_JOB_ID,
    MAX_WORKFLOW_ID,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// `WorkflowRef` with a borrowed id.
#[derive(Debug, Serialize, Deserialize)]
struct WorkflowView<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    checksum: Hash32,
}

/// `JobPayload` with borrowed strings and a heap input list. Field order, names,
/// defaults and types (other than the containers) are those of `JobPayload`.
#[derive(Debug, Serialize, Deserialize)]
struct PayloadView<'a> {
    #[serde(borrow)]
    job_id: Cow<'a, str>,
    #[serde(borrow)]
    workflow: WorkflowView<'a>,
    #[serde(default)]
    inputs: Vec<InputArtifact>,
    compute_class: ComputeClass,
    timeout_ms: u32,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    privacy: PrivacyFlags,
}

impl PayloadView<'_> {
    /// The bounds `JobPayload`'s `heapless` fields enforce (in bytes, as they do).
    fn within_bounds(&self) -> bool {
        self.job_id.len() <= MAX_JOB_ID
            && self.workflow.id.len() <= MAX_WORKFLOW_ID
            && self.inputs.len() <= MAX_INPUTS
    }
}

/// A parsed job: the fields admission reads and the payload's canonical bytes.
#[derive(Debug)]
pub struct Submission<'a> {
    /// The orchestrator's job id.
    pub job_id: Cow<'a, str>,
    /// The workflow it names.
    pub workflow_id: Cow<'a, str>,
    /// The manifest checksum it expects.
    pub checksum: Hash32,
    /// Its compute class.
    pub class: ComputeClass,
    /// `postcard(JobPayload)`: what the WAL stores and execd decodes.
    pub bytes: Vec<u8>,
    /// The input artifacts' CIDs (checked to be available before the job is queued).
    pub inputs: Vec<havn_proto::Cid>,
    /// Its privacy flags (refused at intake while the node cannot honour them).
    pub privacy: PrivacyFlags,
}

/// Why a body gave no [`Submission`].
#[derive(Debug)]
pub enum ParseError<E> {
    /// The full parse refused it (its error names the field).
    Invalid(E),
    /// The payload could not be encoded (a bug, never input: every decoded payload
    /// is within its bounds).
    Encode(postcard::Error),
}

impl<'a> Submission<'a> {
    /// Parses a body: the borrowed fast path, else the full parse (whose error
    /// names the bad field).
    pub fn parse<E>(
        body: &'a [u8],
        full: impl FnOnce(&[u8]) -> Result<JobPayload, E>,
    ) -> Result<Self, ParseError<E>> {
        if let Ok(v) = serde_json::from_slice::<PayloadView<'a>>(body) {
            if v.within_bounds() {
                if let Ok(bytes) = postcard::to_allocvec(&v) {
                    return Ok(Self {
                        job_id: v.job_id,
                        workflow_id: v.workflow.id,
                        checksum: v.workflow.checksum,
                        class: v.compute_class,
                        inputs: v.inputs.iter().map(|a| a.cid).collect(),
                        privacy: v.privacy,
                        bytes,
                    });
                }
            }
        }
        let p = full(body).map_err(ParseError::Invalid)?;
        Self::from_payload(&p).map_err(ParseError::Encode)
    }

    /// From a decoded payload (the slow path, and tests).
    pub fn from_payload(p: &JobPayload) -> Result<Submission<'static>, postcard::Error> {
        Ok(Submission {
            job_id: Cow::Owned(p.job_id.to_string()),
            workflow_id: Cow::Owned(p.workflow.id.to_string()),
            checksum: p.workflow.checksum,
            class: p.compute_class,
            bytes: postcard::to_allocvec(p)?,
            inputs: p.inputs.iter().map(|a| a.cid).collect(),
            privacy: p.privacy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full(body: &[u8]) -> Result<JobPayload, String> {
        serde_json::from_slice::<JobPayload>(body).map_err(|e| e.to_string())
    }

    /// The fast path's bytes are the slow path's, and it takes the body at all.
    fn same(body: &str) {
        let p = full(body.as_bytes()).expect("the full parse accepts the body");
        let v: PayloadView = serde_json::from_str(body).expect("the fast path accepts it");
        assert!(v.within_bounds());
        let fast = postcard::to_allocvec(&v).expect("encode");
        assert_eq!(
            fast,
            postcard::to_allocvec(&p).expect("encode"),
            "body: {body}"
        );
        let s = Submission::parse(body.as_bytes(), full).expect("parse");
        assert_eq!(s.bytes, fast);
        assert_eq!(s.job_id, p.job_id.as_str());
        assert_eq!(s.workflow_id, p.workflow.id.as_str());
        assert_eq!(s.class, p.compute_class);
    }

    const SUM: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn minimal_and_full_payloads_encode_identically() {
        same(&format!(
            r#"{{"job_id":"j","workflow":{{"id":"lm","checksum":"{SUM}"}},"compute_class":"S","timeout_ms":1}}"#
        ));
        let cid = havn_proto::cid::Cid::of_bytes(b"x");
        same(&format!(
            r#"{{"job_id":"j\"2\u00e9","workflow":{{"id":"dif\\fusion","checksum":"{SUM}"}},
               "inputs":[{{"name":"a","cid":"{cid}","location":"ipfs"}},
                         {{"name":"b","cid":"{cid}","location":{{"uri":{{"uri":"https://x/y"}}}}}},
                         {{"name":"c","cid":"{cid}","location":{{"arweave":{{"tx":"t"}}}}}},
                         {{"name":"d","cid":"{cid}","location":"inline"}}],
               "compute_class":"XL","timeout_ms":4294967295,"seed":18446744073709551615,
               "privacy":{{"enclave":true}},"unknown":[1,2]}}"#
        ));
    }

    #[test]
    fn bodies_over_a_bound_take_the_full_parse_and_its_error() {
        let long = "x".repeat(MAX_JOB_ID + 1);
        let body = format!(
            r#"{{"job_id":"{long}","workflow":{{"id":"lm","checksum":"{SUM}"}},"compute_class":"S","timeout_ms":1}}"#
        );
        let v: PayloadView = serde_json::from_str(&body).expect("the view has no bound");
        assert!(!v.within_bounds());
        match Submission::parse(body.as_bytes(), full) {
            Err(ParseError::Invalid(e)) => assert!(!e.is_empty()),
            other => panic!("over the bound must be the full parse's error, got {other:?}"),
        }
        // Exactly at the bound is accepted, by both.
        same(&format!(
            r#"{{"job_id":"{}","workflow":{{"id":"{}","checksum":"{SUM}"}},"compute_class":"M","timeout_ms":1}}"#,
            "é".repeat(MAX_JOB_ID / 2),
            "w".repeat(MAX_WORKFLOW_ID)
        ));
        let cid = havn_proto::cid::Cid::of_bytes(b"x");
        let input = format!(r#"{{"name":"a","cid":"{cid}","location":"ipfs"}}"#);
        let inputs = |n: usize| vec![input.as_str(); n].join(",");
        let body = |n: usize| {
            format!(
                r#"{{"job_id":"j","workflow":{{"id":"lm","checksum":"{SUM}"}},"inputs":[{}],"compute_class":"S","timeout_ms":1}}"#,
                inputs(n)
            )
        };
        same(&body(MAX_INPUTS));
        assert!(Submission::parse(body(MAX_INPUTS + 1).as_bytes(), full).is_err());
    }

    proptest! {
        #[test]
        fn generated_payloads_encode_identically(
            job_id in "\\PC{0,40}",
            wf in "[a-z\\\\\"\u{e9}\u{1F600}]{1,16}",
            class in 0usize..4,
            timeout in any::<u32>(),
            seed in proptest::option::of(any::<u64>()),
            enclave in any::<bool>(),
            redact in any::<bool>(),
            n_inputs in 0usize..4,
            uri in "[ -~]{0,40}",
        ) {
            let cid = havn_proto::cid::Cid::of_bytes(job_id.as_bytes());
            let inputs: Vec<serde_json::Value> = (0..n_inputs)
                .map(|i| serde_json::json!({
                    "name": format!("in{i}"),
                    "cid": cid.to_string(),
                    "location": if i % 2 == 0 { serde_json::json!({"uri": {"uri": uri}}) } else { serde_json::json!("ipfs") },
                }))
                .collect();
            let class = ["S", "M", "L", "XL"][class];
            let mut v = serde_json::json!({
                "job_id": job_id,
                "workflow": {"id": wf, "checksum": SUM},
                "inputs": inputs,
                "compute_class": class,
                "timeout_ms": timeout,
                "privacy": {"enclave": enclave, "redact_outputs": redact},
            });
            if let (Some(s), Some(o)) = (seed, v.as_object_mut()) {
                o.insert("seed".into(), s.into());
            }
            let body = serde_json::to_string(&v).expect("json");
            if full(body.as_bytes()).is_ok() {
                same(&body);
            } else {
                prop_assert!(Submission::parse(body.as_bytes(), full).is_err());
            }
        }
    }
}
