//! A small mTLS HTTP/1.1 client (keep-alive, one connection per [`Conn`]), used by
//! `havnctl submit/get/challenge`, by heartbeat POSTs, by the benchmark and by tests.

use crate::tls::{self, TlsError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A URL that is not `https://host:port/path`.
    #[error("bad url {0:?}: want https://host:port/path")]
    Url(String),
    /// TCP or TLS handshake failure.
    #[error("connect {addr}: {source}")]
    Connect {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// HTTP failure (includes a TLS refusal that shows on the first request).
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// Request building.
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The node answered with an error status.
    #[error("GET {path}: HTTP {status}: {body}")]
    Status {
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Response body (the JSON error).
        body: String,
    },
    /// The node's answer is malformed or does not check out (e.g. a CID mismatch).
    #[error("{0}")]
    Invalid(String),
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Response {
    /// Body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// `https://host:port/path?query` split into `(host, port, path_and_query)`.
pub fn split_url(url: &str) -> Result<(String, u16, String), ClientError> {
    let bad = || ClientError::Url(url.to_string());
    let uri: Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad());
    }
    let host = uri.host().ok_or_else(bad)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    Ok((host, port, path))
}

/// An mTLS client configuration.
#[derive(Clone)]
pub struct MtlsClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for MtlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MtlsClient")
    }
}

impl MtlsClient {
    /// From a rustls config.
    pub fn new(cfg: ClientConfig) -> Self {
        Self {
            connector: TlsConnector::from(Arc::new(cfg)),
        }
    }

    /// From PEM bytes: the CA to trust and optionally our certificate and key.
    pub fn from_pem(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Self, ClientError> {
        Ok(Self::new(tls::client_config(ca, identity)?))
    }

    /// From PEM files.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, ClientError> {
        let (ca, c, k) = (tls::read(ca)?, tls::read(cert)?, tls::read(key)?);
        Self::from_pem(&ca, Some((&c, &k)))
    }

    /// Opens a keep-alive connection to `host:port`.
    pub async fn connect(&self, host: &str, port: u16) -> Result<Conn, ClientError> {
        let addr = format!("{host}:{port}");
        let tls = self.connect_raw(host, port).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            send,
            authority: addr,
        })
    }

    /// A bare mTLS stream to `host:port` (for clients that write HTTP by hand, such as
    /// tests of slow or malformed requests).
    pub async fn connect_raw(
        &self,
        host: &str,
        port: u16,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        let addr = format!("{host}:{port}");
        let err = |source| ClientError::Connect {
            addr: addr.clone(),
            source,
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| ClientError::Url(host.to_string()))?;
        let tcp = TcpStream::connect((host, port)).await.map_err(err)?;
        tcp.set_nodelay(true).map_err(err)?;
        self.connector.connect(name, tcp).await.map_err(err)
    }

    /// One request on a fresh connection to a full URL.
    pub async fn fetch(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let (host, port, path) = split_url(url)?;
        let mut c = self.connect(&host, port).await?;
        c.request(method, &path, body).await
    }
}

/// One HTTP/1.1 keep-alive connection.
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    authority: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.authority)
    }
}

impl Conn {
    /// Sends one request and reads the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        self.request_with(method, path, body, &[]).await
    }

    /// [`Conn::request`] with extra headers.
    pub async fn request_with(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<Response, ClientError> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if body.is_some() {
            b = b.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// GET.
    pub async fn get(&mut self, path: &str) -> Result<Response, ClientError> {
        self.request(Method::GET, path, None).await
    }

    /// POST a JSON body.
    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<Response, ClientError> {
        self.request(Method::POST, path, Some(body)).await
    }
}

/// Challenge material for one DAG node, fetched from a node; both artifacts hash to
/// their CIDs.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// What `GET /job/{job_id}/proof/{node_id}` answered.
    pub body: crate::api::ProofBody,
    /// The proof JSON.
    pub proof: Bytes,
    /// The node's input tensors (safetensors).
    pub inputs: Bytes,
}

async fn get_ok(conn: &mut Conn, path: &str) -> Result<Response, ClientError> {
    let r = conn.get(path).await?;
    if r.status != 200 {
        return Err(ClientError::Status {
            path: path.to_string(),
            status: r.status,
            body: r.text(),
        });
    }
    Ok(r)
}

/// `GET /artifact/{cid}`, refusing bytes that do not hash to `cid`.
pub async fn fetch_artifact(conn: &mut Conn, cid: &havn_proto::Cid) -> Result<Bytes, ClientError> {
    let r = get_ok(conn, &format!("/artifact/{cid}")).await?;
    if !cid.verify(&r.body) {
        return Err(ClientError::Invalid(format!(
            "artifact {cid} does not hash to its CID"
        )));
    }
    Ok(r.body)
}

/// Asks the node for the challenge material of `node_id` in `job_id` and downloads
/// the proof and node inputs, checking their CIDs.
pub async fn fetch_challenge(
    conn: &mut Conn,
    job_id: &str,
    node_id: &str,
    submitter: Option<&str>,
) -> Result<Challenge, ClientError> {
    for id in [job_id, node_id] {
        if !havn_proto::is_ref_id(id) {
            return Err(ClientError::Invalid(format!(
                "{id:?}: ids are 1-64 characters of [A-Za-z0-9._:-]"
            )));
        }
    }
    // Job ids are scoped per submitter: name whose (the receipt says) when known.
    let query = submitter
        .filter(|s| !s.is_empty())
        .map(|s| {
            let enc = percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC);
            format!("?submitter={enc}")
        })
        .unwrap_or_default();
    let r = get_ok(conn, &format!("/job/{job_id}/proof/{node_id}{query}")).await?;
    let body: crate::api::ProofBody = r
        .json()
        .map_err(|e| ClientError::Invalid(format!("proof answer: {e}")))?;
    if body.job_id != job_id || body.node_id != node_id {
        return Err(ClientError::Invalid(format!(
            "asked for {job_id}/{node_id}, node answered for {}/{}",
            body.job_id, body.node_id
        )));
    }
    let proof = fetch_artifact(conn, &body.proof_cid).await?;
    let inputs = fetch_artifact(conn, &body.inputs_cid).await?;
    Ok(Challenge {
        body,
        proof,
        inputs,
    })
}
