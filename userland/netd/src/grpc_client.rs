//! A gRPC client for `havn.v1.Intake` over our own mTLS (ALPN `h2`) and hyper's
//! HTTP/2 client: `havnctl submit --grpc`, the benchmark and tests use it. (An
//! independent client, Python grpcio, is in the test command too.)

use crate::client::{ClientError, MtlsClient};
use crate::tls;
use havn_grpc::v1::intake_client::IntakeClient;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

/// One HTTP/2 connection, as the service tonic's generated client calls through.
#[derive(Clone)]
pub struct Channel {
    send: SendRequest<tonic::body::Body>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("grpc::Channel")
    }
}

type ResponseFuture = Pin<
    Box<dyn Future<Output = Result<hyper::Response<hyper::body::Incoming>, hyper::Error>> + Send>,
>;

impl tonic::codegen::Service<hyper::Request<tonic::body::Body>> for Channel {
    type Response = hyper::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, req: hyper::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.send.send_request(req))
    }
}

/// An mTLS gRPC client configuration (ALPN `h2`).
#[derive(Clone)]
pub struct GrpcClient {
    /// The TCP + TLS connect of the REST client, with ALPN `h2`.
    mtls: MtlsClient,
}

impl std::fmt::Debug for GrpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrpcClient")
    }
}

impl GrpcClient {
    /// From PEM bytes: the CA to trust and optionally our certificate and key.
    pub fn from_pem(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Self, ClientError> {
        Ok(Self {
            mtls: MtlsClient::new(tls::client_config_h2(ca, identity)?),
        })
    }

    /// From PEM files.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, ClientError> {
        let (ca, c, k) = (tls::read(ca)?, tls::read(cert)?, tls::read(key)?);
        Self::from_pem(&ca, Some((&c, &k)))
    }

    /// Opens one HTTP/2 connection to `host:port` (many calls multiplex on it).
    pub async fn channel(&self, host: &str, port: u16) -> Result<Channel, ClientError> {
        let tls = self.mtls.connect_raw(host, port).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ClientError::Invalid(format!(
                "{host}:{port} did not negotiate ALPN h2: not a Havn node with gRPC"
            )));
        }
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(tls))
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Channel { send })
    }

    /// An `Intake` client on a new connection to `host:port`.
    pub async fn intake(
        &self,
        host: &str,
        port: u16,
    ) -> Result<IntakeClient<Channel>, ClientError> {
        let ch = self.channel(host, port).await?;
        Ok(intake_on(ch, host, port))
    }
}

/// An `Intake` client on an open channel.
pub fn intake_on(ch: Channel, host: &str, port: u16) -> IntakeClient<Channel> {
    let origin = format!("https://{host}:{port}")
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("https://localhost"));
    IntakeClient::with_origin(ch, origin).max_decoding_message_size(crate::grpc::MAX_MESSAGE)
}

/// The gRPC request for a job payload (the inverse of [`crate::grpc::payload_from`]).
pub fn request_of(p: &havn_proto::JobPayload) -> havn_grpc::v1::AcceptJobRequest {
    use havn_grpc::v1 as pb;
    use havn_proto::{ArtifactLocation, ComputeClass};
    use pb::input_artifact::Location;
    pb::AcceptJobRequest {
        job_id: p.job_id.to_string(),
        workflow: Some(pb::WorkflowRef {
            id: p.workflow.id.to_string(),
            checksum: p.workflow.checksum.to_hex(),
        }),
        inputs: p
            .inputs
            .iter()
            .map(|a| pb::InputArtifact {
                name: a.name.to_string(),
                cid: a.cid.to_string(),
                location: Some(match &a.location {
                    ArtifactLocation::Ipfs => Location::Ipfs(pb::Empty {}),
                    ArtifactLocation::Arweave { tx } => Location::ArweaveTx(tx.to_string()),
                    ArtifactLocation::Uri { uri } => Location::Uri(uri.to_string()),
                    ArtifactLocation::Inline => Location::Inline(pb::Empty {}),
                }),
            })
            .collect(),
        compute_class: match p.compute_class {
            ComputeClass::S => pb::ComputeClass::S,
            ComputeClass::M => pb::ComputeClass::M,
            ComputeClass::L => pb::ComputeClass::L,
            ComputeClass::XL => pb::ComputeClass::Xl,
        } as i32,
        timeout_ms: p.timeout_ms,
        seed: p.seed,
        privacy: Some(pb::PrivacyFlags {
            enclave: p.privacy.enclave,
            redact_outputs: p.privacy.redact_outputs,
            output_key: p.privacy.output_key.map(|k| k.to_hex()).unwrap_or_default(),
        }),
    }
}

/// The signed receipt a gRPC `Receipt` carries, from its exact signed bytes (the
/// decoded fields are checked against them).
pub fn signed_receipt_of(
    r: &havn_grpc::v1::Receipt,
) -> Result<havn_proto::SignedReceipt, ClientError> {
    let receipt: havn_proto::Receipt = postcard::from_bytes(&r.signed_bytes)
        .map_err(|e| ClientError::Invalid(format!("receipt signed_bytes do not decode: {e}")))?;
    let signature: [u8; 64] = r.signature.as_slice().try_into().map_err(|_| {
        ClientError::Invalid(format!(
            "receipt signature is {} bytes, not 64",
            r.signature.len()
        ))
    })?;
    if receipt.job_id.as_str() != r.job_id
        || receipt.runtime_hash.to_hex() != r.runtime_hash
        || receipt.outputs_cid.to_string() != r.outputs_cid
    {
        return Err(ClientError::Invalid(
            "the receipt's fields disagree with its signed bytes".into(),
        ));
    }
    Ok(havn_proto::SignedReceipt {
        receipt,
        signature: havn_proto::Sig64(signature),
    })
}
