//! One connection to one Kafka broker: TCP, TLS when the endpoint asks for it, the API
//! versions the broker serves (ApiVersions, asked first), SASL with the host's credentials,
//! and framing: the host writes every request header (correlation id, client id "eventbus")
//! and strips every response header, so the component handles bodies only.

use super::endpoint::Mechanism;
use super::sasl;
use crate::caps::CapError;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes, VersionRange};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const CLIENT_ID: &str = "eventbus";
const UNSUPPORTED_VERSION: i16 = 35;

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

/// SASL credentials as values: resolved from their handles just before connecting.
pub struct Credentials {
    pub mechanism: Mechanism,
    pub user: String,
    pub password: String,
}

pub struct Conn {
    io: Box<dyn Io>,
    /// `host:port`, for errors.
    pub addr: String,
    next_id: i32,
    /// The broker's API versions: key → (min, max).
    pub versions: HashMap<i16, (i16, i16)>,
    /// The largest response accepted.
    max: usize,
}

fn unavailable(addr: &str, what: impl std::fmt::Display) -> CapError {
    CapError::Unavailable(format!("Kafka broker {addr}: {what}"))
}

/// TLS as async-nats does it: rustls with ring and the platform's roots (which honour
/// SSL_CERT_FILE and SSL_CERT_DIR).
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err("no trusted root certificates found on this machine".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    });
    config.clone().map(tokio_rustls::TlsConnector::from)
}

impl Conn {
    /// Connects to `host:port` (already parsed and granted, or advertised by a granted
    /// cluster), asks its API versions, and authenticates.
    pub async fn open(
        host: &str,
        port: u16,
        tls: bool,
        creds: Option<&Credentials>,
        max: usize,
    ) -> Result<Conn, CapError> {
        let addr = format!("{host}:{port}");
        let dial = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((dial, port))
            .await
            .map_err(|e| unavailable(&addr, format!("cannot connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if tls {
            let connector = tls_connector().map_err(|e| unavailable(&addr, e))?;
            let name = rustls::pki_types::ServerName::try_from(dial.to_string())
                .map_err(|e| CapError::Invalid(format!("{addr}: not a TLS server name: {e}")))?;
            Box::new(
                connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| unavailable(&addr, format!("TLS handshake: {e}")))?,
            )
        } else {
            Box::new(tcp)
        };
        let mut conn = Conn {
            io,
            addr,
            next_id: 0,
            versions: HashMap::new(),
            max,
        };
        conn.api_versions().await?;
        if let Some(c) = creds {
            conn.authenticate(c).await?;
        }
        Ok(conn)
    }

    /// The highest version of `key` both the broker and the host (`ours`) speak.
    pub fn version_for(&self, key: ApiKey, ours: VersionRange) -> Option<i16> {
        let (min, max) = *self.versions.get(&(key as i16))?;
        let (lo, hi) = (min.max(ours.min), max.min(ours.max));
        (lo <= hi).then_some(hi)
    }

    /// One request/response: `body` framed with the host's header; the response's body.
    pub async fn round_trip(
        &mut self,
        key: i16,
        version: i16,
        body: &[u8],
    ) -> Result<Bytes, CapError> {
        let api = ApiKey::try_from(key)
            .map_err(|()| CapError::Invalid(format!("API key {key} is not in the protocol")))?;
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let header = RequestHeader::default()
            .with_request_api_key(key)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::with_capacity(body.len() + 64);
        frame.put_i32(0);
        header
            .encode(&mut frame, api.request_header_version(version))
            .map_err(|e| CapError::Invalid(format!("framing {api:?} v{version}: {e}")))?;
        frame.extend_from_slice(body);
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        let addr = self.addr.clone();
        let lost = |e: std::io::Error| unavailable(&addr, format!("connection lost: {e}"));
        self.io.write_all(&frame).await.map_err(lost)?;
        self.io.flush().await.map_err(lost)?;
        let size = self.io.read_i32().await.map_err(lost)?;
        if size < 4 || size as usize > self.max + 4096 {
            return Err(CapError::Invalid(format!(
                "Kafka broker {addr}: a response of {size} bytes (the limit is {} bytes)",
                self.max
            )));
        }
        let mut resp = vec![0u8; size as usize];
        self.io.read_exact(&mut resp).await.map_err(lost)?;
        let mut resp = Bytes::from(resp);
        let h = ResponseHeader::decode(&mut resp, api.response_header_version(version))
            .map_err(|e| unavailable(&addr, format!("a malformed response header: {e}")))?;
        if h.correlation_id != id {
            return Err(unavailable(
                &addr,
                format!("answered request {} instead of {id}", h.correlation_id),
            ));
        }
        Ok(resp)
    }

    /// A request the host makes itself, encoded and decoded with kafka-protocol.
    pub async fn call<Q: Encodable, A: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Q,
    ) -> Result<A, CapError> {
        let mut body = BytesMut::new();
        req.encode(&mut body, version)
            .map_err(|e| CapError::Invalid(format!("encoding {key:?} v{version}: {e}")))?;
        let mut resp = self.round_trip(key as i16, version, &body).await?;
        A::decode(&mut resp, version)
            .map_err(|e| unavailable(&self.addr, format!("a malformed {key:?} response: {e}")))
    }

    async fn api_versions(&mut self) -> Result<(), CapError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = 3;
        let mut body = BytesMut::new();
        req.encode(&mut body, version)
            .map_err(|e| CapError::Invalid(format!("encoding ApiVersions: {e}")))?;
        let raw = self
            .round_trip(ApiKey::ApiVersions as i16, version, &body)
            .await?;
        let mut resp = match ApiVersionsResponse::decode(&mut raw.clone(), version) {
            Ok(r) if r.error_code != UNSUPPORTED_VERSION => r,
            _ => {
                // A broker that does not serve v3 answers at v0 with the versions it serves:
                // ask again at its best.
                let v0 = ApiVersionsResponse::decode(&mut raw.clone(), 0).map_err(|e| {
                    unavailable(&self.addr, format!("a malformed ApiVersions response: {e}"))
                })?;
                let theirs = v0
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16);
                version = theirs.map_or(0, |k| k.max_version.min(3));
                self.call(ApiKey::ApiVersions, version, &req).await?
            }
        };
        resp.api_keys.retain(|k| k.min_version <= k.max_version);
        if resp.error_code != 0 {
            return Err(unavailable(
                &self.addr,
                format!(
                    "ApiVersions v{version} failed with error code {}",
                    resp.error_code
                ),
            ));
        }
        self.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// SaslHandshake v1, then SaslAuthenticate rounds for the mechanism.
    async fn authenticate(&mut self, c: &Credentials) -> Result<(), CapError> {
        let mech = c.mechanism.name();
        let refused = |addr: &str, why: String| {
            CapError::Denied(format!(
                "Kafka broker {addr}: SASL {mech} authentication failed: {why}"
            ))
        };
        if self
            .version_for(ApiKey::SaslHandshake, HANDSHAKE_V1)
            .is_none()
        {
            return Err(refused(
                &self.addr,
                "the broker does not serve SaslHandshake v1".into(),
            ));
        }
        let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mech));
        let resp: SaslHandshakeResponse = self.call(ApiKey::SaslHandshake, 1, &hs).await?;
        if resp.error_code != 0 {
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(refused(
                &self.addr,
                format!(
                    "the listener does not enable {mech} (it offers {})",
                    offered.join(", ")
                ),
            ));
        }
        let v = self
            .version_for(ApiKey::SaslAuthenticate, SaslAuthenticateRequest::VERSIONS)
            .ok_or_else(|| {
                refused(
                    &self.addr,
                    "the broker does not serve SaslAuthenticate".into(),
                )
            })?;
        match c.mechanism {
            Mechanism::Plain => {
                self.sasl_step(v, sasl::plain(&c.user, &c.password)).await?;
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let mut scram = sasl::Scram::new(c.mechanism, &c.user, &c.password)
                    .map_err(|e| refused(&self.addr, e))?;
                let first = self.sasl_step(v, scram.client_first()).await?;
                let fin = scram
                    .client_final(&first)
                    .map_err(|e| refused(&self.addr, e))?;
                let last = self.sasl_step(v, fin).await?;
                scram.verify(&last).map_err(|e| refused(&self.addr, e))?;
            }
        }
        Ok(())
    }

    async fn sasl_step(&mut self, version: i16, bytes: Vec<u8>) -> Result<Bytes, CapError> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
        let resp: SaslAuthenticateResponse =
            self.call(ApiKey::SaslAuthenticate, version, &req).await?;
        if resp.error_code != 0 {
            let why = resp.error_message.as_ref().map_or_else(
                || format!("error code {}", resp.error_code),
                |m| m.to_string(),
            );
            return Err(CapError::Denied(format!(
                "Kafka broker {}: the broker refused the SASL credentials: {why}",
                self.addr
            )));
        }
        Ok(resp.auth_bytes)
    }
}

/// SaslHandshake's version 1 (SaslAuthenticate follows), the only one the host speaks.
const HANDSHAKE_V1: VersionRange = VersionRange { min: 1, max: 1 };
