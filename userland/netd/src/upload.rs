//! `POST /artifact`: an orchestrator uploads a job's input (e.g. a chat request) and
//! gets its CID back. The bytes land in `state_dir/uploads/<cid>` (netd's directory,
//! created by havn-init, readable by execd), written temp → fsync → rename → fsync dir, so an
//! acknowledged upload survives a crash. Idempotent: the same bytes give the same CID
//! and are stored once.

use crate::admission::Failure;
use crate::api::Ctx;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Largest artifact accepted.
pub const MAX_ARTIFACT_BYTES: usize = 8 << 20;

type Resp = Response<Full<Bytes>>;

fn store(dir: &Path, cid: &havn_proto::Cid, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(cid.to_string());
    if std::fs::read(&path).is_ok_and(|b| cid.verify(&b)) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    // A temp name of its own per upload: two concurrent uploads of the same bytes must
    // not truncate each other's file before the rename.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{cid}.{}.{n}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// True when an input CID can be read by execd (uploaded, or an earlier output).
pub fn available(ctx: &Ctx, cid: &havn_proto::Cid) -> bool {
    let name = cid.to_string();
    ctx.uploads.join(&name).is_file() || ctx.artifacts.join(&name).is_file()
}

/// The header of an input artifact when it is an encrypted payload (`havn-payload`
/// envelope): `Ok(None)` for plain bytes, `Err` for an unreadable file or a malformed
/// header. netd reads only the 78-byte header; it never holds the key to open it.
pub fn sealed_header(
    ctx: &Ctx,
    cid: &havn_proto::Cid,
) -> Result<Option<havn_payload::Header>, String> {
    use std::io::Read;
    let name = cid.to_string();
    let path = [ctx.uploads.join(&name), ctx.artifacts.join(&name)]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| "the artifact is not readable".to_string())?;
    let mut head = Vec::with_capacity(havn_payload::HEADER + havn_payload::TAG);
    std::fs::File::open(&path)
        .and_then(|f| {
            f.take((havn_payload::HEADER + havn_payload::TAG) as u64)
                .read_to_end(&mut head)
        })
        .map_err(|e| format!("the artifact is not readable: {e}"))?;
    if !havn_payload::is_envelope(&head) {
        return Ok(None);
    }
    havn_payload::header(&head)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// An uploaded (or earlier output) artifact's bytes, at most `max`; the error is
/// (field, message) for a 400.
fn read_input(
    ctx: &Ctx,
    cid: &havn_proto::Cid,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, (String, String)> {
    let name = cid.to_string();
    let unreadable = || {
        (
            "inputs[0]".to_string(),
            format!("the {what} artifact is not readable"),
        )
    };
    let path = [ctx.uploads.join(&name), ctx.artifacts.join(&name)]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(unreadable)?;
    let len = std::fs::metadata(&path).map_err(|_| unreadable())?.len();
    if len > max as u64 {
        return Err((
            "inputs[0]".to_string(),
            format!("a {what} is at most {max} bytes"),
        ));
    }
    std::fs::read(&path).map_err(|_| unreadable())
}

/// For a `chat` job: its request artifact must parse and be within bounds, checked at
/// intake so that a bad request is a 400 naming the field, not a failed job later.
/// (That the prompt fits the model's context needs the tokenizer: execd checks it.)
/// The error is (field, message), the field as `inputs[0].<field of the request>`.
pub fn check_chat_request(ctx: &Ctx, cid: &havn_proto::Cid) -> Result<(), (String, String)> {
    let bytes = read_input(
        ctx,
        cid,
        havn_proto::chat::MAX_REQUEST_BYTES,
        "chat request",
    )?;
    havn_proto::chat::ChatRequest::from_json(&bytes)
        .map(|_| ())
        .map_err(|e| {
            let msg = format!("chat request: {}: {}", e.field, e.reason);
            (format!("inputs[0].{}", e.field), msg)
        })
}

/// For a `diffusion` job (its JSON request) or a `transcribe` job (its WAV file): the
/// input artifact must pass the rules execd applies (`havn_proto::media`), checked at
/// intake so that a bad one is a 400 naming the field and nothing is queued.
pub fn check_media_input(
    ctx: &Ctx,
    workflow: &str,
    cid: &havn_proto::Cid,
) -> Result<(), (String, String)> {
    let checked = match workflow {
        "diffusion" => {
            let b = read_input(
                ctx,
                cid,
                havn_proto::media::MAX_DIFFUSION_REQUEST_BYTES,
                "diffusion request",
            )?;
            havn_proto::media::DiffusionRequest::from_json(&b).map(|_| ())
        }
        _ => {
            let b = read_input(ctx, cid, MAX_ARTIFACT_BYTES, "WAV file")?;
            havn_proto::media::check_wav(&b).map(|_| ())
        }
    };
    checked.map_err(|e| {
        (
            format!("inputs[0].{}", e.field),
            format!("{workflow} input: {}: {}", e.field, e.reason),
        )
    })
}

/// Handles `POST /artifact`.
pub async fn upload(ctx: &Ctx, client: &str, req: Request<Incoming>) -> Resp {
    let body = match crate::body::read(req, MAX_ARTIFACT_BYTES, ctx.body_deadline, false).await {
        Ok(b) => b,
        Err((why, resp)) => {
            tracing::info!(
                client,
                status = why.status().as_u16(),
                "upload refused: body"
            );
            return resp;
        }
    };
    match store_upload(ctx, client, body.to_vec()).await {
        Ok(cid) => {
            let mut resp = Response::new(Full::new(Bytes::from(format!("{{\"cid\":\"{cid}\"}}"))));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        Err(f) => crate::api::failure(f),
    }
}

/// Stores an uploaded job input (whole, at most [`MAX_ARTIFACT_BYTES`]) durably and
/// answers its CID; both APIs' upload ends here.
pub async fn store_upload(
    ctx: &Ctx,
    client: &str,
    body: Vec<u8>,
) -> Result<havn_proto::Cid, Failure> {
    if body.is_empty() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "empty artifact",
            None,
        ));
    }
    if body.len() > MAX_ARTIFACT_BYTES {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an artifact is at most {MAX_ARTIFACT_BYTES} bytes"),
            None,
        ));
    }
    let cid = havn_proto::Cid::of_bytes(&body);
    let dir = ctx.uploads.clone();
    let c = cid;
    let r = tokio::task::spawn_blocking(move || store(&dir, &c, &body)).await;
    match r {
        Ok(Ok(())) => {
            tracing::info!(client, %cid, "artifact uploaded");
            Ok(cid)
        }
        Ok(Err(e)) => {
            tracing::error!(client, %cid, error = %e, "cannot store an uploaded artifact");
            let status = if e.raw_os_error() == Some(28) {
                StatusCode::INSUFFICIENT_STORAGE
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Err(Failure::new(status, "cannot store the artifact", None))
        }
        Err(_) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upload task failed",
            None,
        )),
    }
}
