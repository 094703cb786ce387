//! Reading a request body: bounded in size (413 before and while reading) and in time
//! (408 when the whole body has not arrived by a deadline that allows a slow client
//! [`MIN_RATE`] bytes per second), and `Content-Type` checked (415).

use crate::api::error;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use std::time::Duration;

type Resp = Response<Full<Bytes>>;

/// Time every body gets, whatever its size.
pub const BASE_DEADLINE: Duration = Duration::from_secs(10);
/// The slowest upload rate allowed beyond [`BASE_DEADLINE`], in bytes per second.
pub const MIN_RATE: u64 = 64 * 1024;

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 413.
    TooLarge,
    /// 408.
    TooSlow,
    /// 415.
    WrongType,
    /// 400.
    Broken,
}

impl Refused {
    /// The status to answer with.
    pub fn status(self) -> StatusCode {
        match self {
            Refused::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refused::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Refused::WrongType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refused::Broken => StatusCode::BAD_REQUEST,
        }
    }
}

/// The deadline for a body of at most `limit` bytes: `base`, plus one second per
/// [`MIN_RATE`] bytes of the limit.
pub fn deadline(base: Duration, limit: usize) -> Duration {
    base + Duration::from_secs(limit as u64 / MIN_RATE)
}

/// Reads `req`'s body: at most `limit` bytes, within [`deadline`]`(base, limit)`; when `json`
/// is set, a `Content-Type` other than `application/json` is refused (none is taken
/// as JSON). The error is the response to send.
pub async fn read(
    req: Request<Incoming>,
    limit: usize,
    base: Duration,
    json: bool,
) -> Result<Bytes, (Refused, Resp)> {
    if json {
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let essence = ct
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" {
                let msg = format!(
                    "Content-Type must be application/json, got {:?}",
                    String::from_utf8_lossy(ct.as_bytes())
                );
                return Err((
                    Refused::WrongType,
                    error(Refused::WrongType.status(), &msg, None),
                ));
            }
        }
    }
    let too_big = || {
        let msg = format!("request body exceeds {limit} bytes");
        (
            Refused::TooLarge,
            error(Refused::TooLarge.status(), &msg, None),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    let wait = deadline(base, limit);
    let read = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(wait, read).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_big()),
        Ok(Err(e)) => Err((
            Refused::Broken,
            error(
                Refused::Broken.status(),
                &format!("cannot read body: {e}"),
                None,
            ),
        )),
        Err(_) => {
            let msg = format!("request body not received within {} ms", wait.as_millis());
            Err((
                Refused::TooSlow,
                error(Refused::TooSlow.status(), &msg, None),
            ))
        }
    }
}
