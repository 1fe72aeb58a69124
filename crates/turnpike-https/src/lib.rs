//! The outbound HTTP(S) client: the calls turnpike makes to another server (an upstream MCP
//! server, an OAuth issuer, a Lightning node) go through a client built here, so that TLS is
//! set up one way everywhere.
//!
//! - TLS is rustls with the *ring* provider and its safe default protocol versions (TLS 1.2 and
//!   1.3), trusting the Mozilla root certificates ([`tls_config`]); a caller that pins a
//!   certificate starts from [`tls_config_builder`] and brings its own verifier.
//! - Connections are hyper-util's pooled client, `https://` and `http://` alike (a caller that
//!   must refuse plain HTTP checks the URL first), with `TCP_NODELAY`, HTTP/1.1 always and
//!   HTTP/2 when asked for ([`Options`]).

pub mod bounded;

pub use bounded::BoundedClient;

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::WantsClientCert;
use rustls::{ClientConfig, ConfigBuilder};

/// An error and every cause below it, `outer: inner: …`, for the logs and the errors an outbound
/// call reports (an outer error such as "cannot connect" says little; the cause — connection
/// refused, DNS, TLS — is in its sources). A cause whose text the chain already holds is left
/// out (hyper repeats its source in some messages).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

/// The connector underneath every client: TCP, then TLS for `https://` URLs.
pub type Connector = HttpsConnector<HttpConnector>;

/// A pooled client sending request bodies of type `B`.
pub type HttpsClient<B> = Client<Connector, B>;

/// How a client connects and keeps its connections.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The longest a TCP connection may take to open (none: the operating system's).
    pub connect_timeout: Option<Duration>,
    /// How long an idle pooled connection is kept (none: hyper-util's default, 90 s).
    pub pool_idle_timeout: Option<Duration>,
    /// Offer HTTP/2 through ALPN as well as HTTP/1.1.
    pub http2: bool,
}

/// A rustls configuration builder with the *ring* provider and the safe default protocol
/// versions, waiting for the certificate verifier.
pub fn tls_config_builder(
) -> Result<ConfigBuilder<ClientConfig, rustls::WantsVerifier>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
}

/// The client TLS configuration turnpike uses: [`tls_config_builder`], trusting the Mozilla
/// root certificates, no client certificate.
pub fn tls_config() -> Result<ClientConfig, rustls::Error> {
    Ok(with_roots(tls_config_builder()?).with_no_client_auth())
}

fn with_roots(
    b: ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
) -> ConfigBuilder<ClientConfig, WantsClientCert> {
    b.with_webpki_roots()
}

/// A configuration that trusts exactly the certificates in `certs` as end-entity certificates,
/// byte for byte, and nothing else (the way LND and clnrest clients trust a node's self-signed
/// certificate); handshake signatures are still verified against the certificate presented.
pub fn pinned_tls_config(
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = tls_config_builder()?;
    let verifier = Arc::new(PinnedCert {
        certs,
        provider: builder.crypto_provider().clone(),
    });
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts a server whose end-entity certificate is byte-for-byte one of the pinned ones (the
/// way LND and clnrest clients trust a node's self-signed certificate); handshake signatures
/// are still verified against it.
#[derive(Debug)]
struct PinnedCert {
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A connector over `tls` (from [`tls_config`], or a pinned configuration).
pub fn connector(tls: ClientConfig, options: &Options) -> Connector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(options.connect_timeout);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    if options.http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    }
}

/// A pooled client over `tls`.
pub fn client_with<B>(tls: ClientConfig, options: &Options) -> HttpsClient<B>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut builder = Client::builder(TokioExecutor::new());
    if let Some(idle) = options.pool_idle_timeout {
        builder.pool_idle_timeout(idle);
    }
    builder.build(connector(tls, options))
}

/// A pooled client trusting the Mozilla root certificates ([`tls_config`]).
pub fn client<B>(options: &Options) -> Result<HttpsClient<B>, rustls::Error>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    Ok(client_with(tls_config()?, options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn tls_config_offers_safe_versions_only() {
        let c = tls_config().unwrap();
        assert!(c.alpn_protocols.is_empty());
        assert!(c.crypto_provider().cipher_suites.iter().all(|s| matches!(
            s.version().version,
            rustls::ProtocolVersion::TLSv1_2 | rustls::ProtocolVersion::TLSv1_3
        )));
    }

    #[test]
    fn connector_negotiates_http2_only_when_asked() {
        // The ALPN list lives inside the connector; what can be seen is that both build.
        let _h1 = connector(tls_config().unwrap(), &Options::default());
        let _h2 = connector(
            tls_config().unwrap(),
            &Options {
                http2: true,
                ..Options::default()
            },
        );
    }

    /// A plain-HTTP round trip through the client to a real socket: the request arrives and the
    /// answer is read back.
    #[tokio::test]
    async fn client_speaks_plain_http_to_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client closed early");
                buf.extend_from_slice(&chunk[..n]);
            }
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await
                .unwrap();
            String::from_utf8(buf).unwrap()
        });
        let client: HttpsClient<Full<Bytes>> = client(&Options {
            connect_timeout: Some(Duration::from_secs(5)),
            pool_idle_timeout: Some(Duration::from_secs(1)),
            http2: true,
        })
        .unwrap();
        let req = http::Request::get(format!("http://{addr}/probe"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /probe HTTP/1.1\r\n"), "{head}");
    }
}
