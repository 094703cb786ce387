//! Encrypted job inputs (`havn-payload` envelopes): opened here, in execd's memory,
//! with this boot's payload key from attestd. The plaintext never reaches disk: a job
//! on a sealed input runs without checkpoints, and what is retained for challenges is
//! the envelope, not the plaintext. The receipt's `inputs_cid` names the envelope.

use havn_payload::{PayloadError, PayloadKey};
use zeroize::Zeroizing;

/// A job input as the job sees it.
pub struct Input {
    /// The bytes the job runs on (plaintext; zeroised on drop when it was sealed).
    pub bytes: Zeroizing<Vec<u8>>,
    /// The envelope it came in, if it was sealed (retained instead of the plaintext).
    pub envelope: Option<Vec<u8>>,
}

/// `stored` as the job's input: opened when it is an envelope, as is otherwise.
pub fn open(key: Option<&PayloadKey>, stored: Vec<u8>) -> Result<Input, String> {
    if !havn_payload::is_envelope(&stored) {
        return Ok(Input {
            bytes: Zeroizing::new(stored),
            envelope: None,
        });
    }
    let Some(key) = key else {
        return Err("the input is an encrypted payload and this node holds no payload key (attestd gave none)".into());
    };
    match key.open(&stored) {
        Ok(plain) => Ok(Input {
            bytes: plain,
            envelope: Some(stored),
        }),
        // The one message a tampered ciphertext gets (the wording).
        Err(PayloadError::Authentication) => Err("payload authentication failed".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The outputs as stored, served and named by the receipt: sealed to the orchestrator's
/// `output_key` when the job asks for `redact_outputs`, as they are otherwise.
pub fn outputs(
    privacy: &havn_proto::PrivacyFlags,
    plain: &[u8],
) -> Result<std::borrow::Cow<'static, [u8]>, String> {
    if !privacy.redact_outputs {
        return Ok(std::borrow::Cow::Owned(plain.to_vec()));
    }
    let Some(key) = privacy.output_key else {
        return Err(
            "privacy.redact_outputs without privacy.output_key: nothing to seal the outputs to"
                .into(),
        );
    };
    havn_payload::seal(&key.0, plain)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| format!("sealing the outputs: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_inputs_pass_sealed_ones_open_and_tampered_ones_fail() {
        let k = PayloadKey::generate();
        let plain = open(Some(&k), b"plain".to_vec()).unwrap();
        assert_eq!(&*plain.bytes, b"plain");
        assert!(plain.envelope.is_none());
        let env = havn_payload::seal(&k.public(), b"secret").unwrap();
        let opened = open(Some(&k), env.clone()).unwrap();
        assert_eq!(&*opened.bytes, b"secret");
        assert_eq!(opened.envelope.as_deref(), Some(env.as_slice()));
        let mut bad = env.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            open(Some(&k), bad).err().as_deref(),
            Some("payload authentication failed")
        );
        assert!(open(None, env)
            .err()
            .unwrap_or_default()
            .contains("no payload key"));
    }

    #[test]
    fn redacted_outputs_are_sealed_to_the_orchestrators_key() {
        let orch = PayloadKey::generate();
        let mut p = havn_proto::PrivacyFlags::default();
        assert_eq!(&*outputs(&p, b"out").unwrap(), b"out");
        p.redact_outputs = true;
        assert!(outputs(&p, b"out").unwrap_err().contains("output_key"));
        p.output_key = Some(havn_proto::PubKey32(orch.public()));
        let sealed = outputs(&p, b"out").unwrap();
        assert!(havn_payload::is_envelope(&sealed));
        assert_eq!(&*orch.open(&sealed).unwrap(), b"out");
    }
}
