//! `havnctl submit --grpc`: the same job over `havn.v1.Intake` (UploadArtifact,
//! AcceptJob, WatchJob, GetReceipt) on the node's port with ALPN h2. Prints what the
//! REST path prints: the ticket JSON, then with `--wait` the signed receipt JSON.

use crate::net_cmd::{input_spec, payload, runtime, InputSpec, SubmitArgs};
use anyhow::{bail, Context};
use havn_grpc::v1 as pb;
use havn_netd::client::split_url;
use havn_netd::grpc_client::{request_of, signed_receipt_of, GrpcClient};

/// Chunks an upload is streamed in.
const CHUNK: usize = 256 << 10;

fn refused(what: &str, s: &tonic::Status) -> anyhow::Error {
    let field = s
        .metadata()
        .get("havn-field")
        .and_then(|v| v.to_str().ok())
        .map(|f| format!(" [field {f}]"))
        .unwrap_or_default();
    anyhow::anyhow!("{what} refused ({:?}){field}: {}", s.code(), s.message())
}

/// Runs `submit` over gRPC.
pub fn run(a: SubmitArgs) -> anyhow::Result<()> {
    let c =
        GrpcClient::from_files(&a.tls.ca, &a.tls.cert, &a.tls.key).context("loading TLS files")?;
    let (host, port, _) = split_url(&a.url)?;
    runtime()?.block_on(async {
        let mut intake = c.intake(&host, port).await?;
        // The quote is a REST route: taken over an mTLS connection with the same files.
        let key = match a.encrypt.encrypt {
            true => {
                let rest = crate::net_cmd::client(&a.tls)?;
                let mut rest = crate::net_cmd::connect(&rest, &a.url).await?;
                Some(crate::encrypt::attested_payload_key(&mut rest, &a.encrypt).await?)
            }
            false => None,
        };
        let mut resolved = Vec::new();
        for i in &a.inputs {
            resolved.push(match input_spec(i)? {
                InputSpec::File(name, f) => {
                    let bytes =
                        std::fs::read(&f).with_context(|| format!("--input: reading {f}"))?;
                    let bytes = crate::encrypt::maybe_seal(key.as_ref(), bytes)?;
                    let want = havn_proto::Cid::of_bytes(&bytes);
                    let chunks: Vec<pb::ArtifactChunk> = bytes
                        .chunks(CHUNK)
                        .map(|d| pb::ArtifactChunk { data: d.to_vec() })
                        .collect();
                    let art = intake
                        .upload_artifact(tonic::codegen::tokio_stream::iter(chunks))
                        .await
                        .map_err(|s| refused(&format!("uploading {f}"), &s))?
                        .into_inner();
                    anyhow::ensure!(
                        art.cid == want.to_string(),
                        "node stored the upload as {}, not {want}",
                        art.cid
                    );
                    eprintln!("uploaded {f} as {want} (gRPC)");
                    (name, want)
                }
                InputSpec::Cid(name, cid) => (name, cid),
            });
        }
        let p = payload(&a, &resolved)?;
        let t = intake
            .accept_job(request_of(&p))
            .await
            .map_err(|s| refused("job", &s))?
            .into_inner();
        println!(
            "{}",
            serde_json::json!({"ticket_id": t.ticket_id, "eta_seconds": t.eta_seconds})
        );
        if !a.wait {
            return Ok(());
        }
        let mut watch = intake
            .watch_job(pb::WatchJobRequest {
                ticket_id: t.ticket_id,
                max_wait_seconds: u32::try_from(a.timeout).unwrap_or(u32::MAX),
            })
            .await
            .map_err(|s| refused("watch", &s))?
            .into_inner();
        let mut last = None;
        while let Some(s) = watch.message().await.map_err(|s| refused("watch", &s))? {
            let state = pb::JobState::try_from(s.state).unwrap_or(pb::JobState::Unspecified);
            eprintln!("job {}: {}", p.job_id, state.as_str_name());
            if state == pb::JobState::Failed {
                bail!("job {} failed: {}", p.job_id, s.failure_reason);
            }
            last = Some(state);
        }
        if last != Some(pb::JobState::Done) {
            bail!("timed out after {} s; state: {last:?}", a.timeout);
        }
        let r = intake
            .get_receipt(pb::GetReceiptRequest {
                job_id: p.job_id.to_string(),
                submitter: String::new(),
            })
            .await
            .map_err(|s| refused("receipt", &s))?
            .into_inner();
        let signed = signed_receipt_of(&r)?;
        let text = serde_json::to_string_pretty(&signed)?;
        if let Some(file) = &a.receipt_out {
            std::fs::write(file, &text).with_context(|| format!("writing {}", file.display()))?;
        }
        println!("{text}");
        Ok(())
    })
}
