//! HTTPS to a node with a self-signed certificate, as LND and clnrest serve by default: accepted
//! only when that exact certificate is pinned (`tls_cert_path`); refused with another pinned
//! certificate and with the default (Mozilla) roots.

// Test code: a failed unwrap or expect is a failed test (clippy.toml allows them in #[test]
// functions; the helpers around them are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

use turnpike_lightning::bolt11::{self, InvoiceFields, Network};
use turnpike_lightning::config::LndConfig;
use turnpike_lightning::{connect, BackendConfig, HttpSettings, LightningError, Secret};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An HTTPS server answering `POST /v1/invoices` like LND, with certificate A.
async fn tls_lnd() -> std::net::SocketAddr {
    let cert = CertificateDer::from_pem_file(fixture("node-a.cert.pem")).unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("node-a.key.pem")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req: http::Request<hyper::body::Incoming>| async {
                    let key = k256::ecdsa::SigningKey::from_bytes(&[5u8; 32].into()).unwrap();
                    let preimage = [1u8; 32];
                    let hash: [u8; 32] = Sha256::digest(preimage).into();
                    let bolt11 = bolt11::encode(
                        &InvoiceFields {
                            network: Network::Regtest,
                            amount_msat: Some(1000),
                            timestamp: 1_800_000_000,
                            payment_hash: hash,
                            payment_secret: [2; 32],
                            description: "tls",
                            expiry_secs: 600,
                            min_final_cltv_expiry: 80,
                        },
                        &key,
                    )
                    .unwrap();
                    use base64::Engine;
                    let body: Value = json!({
                        "r_hash": base64::engine::general_purpose::STANDARD.encode(hash),
                        "payment_request": bolt11,
                        "add_index": "1",
                    });
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        body.to_string(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn cfg(addr: std::net::SocketAddr, pinned: Option<&str>) -> BackendConfig {
    BackendConfig::Lnd(LndConfig {
        url: format!("https://127.0.0.1:{}", addr.port()),
        macaroon_hex: Some(Secret("0201".into())),
        macaroon_path: None,
        http: HttpSettings {
            timeout_secs: 5,
            lookup_retries: 0,
            tls_cert_path: pinned.map(fixture),
            allow_plain_http: false,
        },
    })
}

#[tokio::test]
async fn pinned_self_signed_certificate() {
    let addr = tls_lnd().await;
    let ok = connect(&cfg(addr, Some("node-a.cert.pem"))).unwrap();
    let inv = ok.create_invoice(1000, "tls", 600).await.unwrap();
    assert_eq!(inv.amount_msat, 1000);

    let other = connect(&cfg(addr, Some("node-b.cert.pem"))).unwrap();
    assert!(matches!(
        other.create_invoice(1000, "tls", 600).await.unwrap_err(),
        LightningError::Unreachable(_)
    ));
    let public_roots = connect(&cfg(addr, None)).unwrap();
    assert!(matches!(
        public_roots
            .create_invoice(1000, "tls", 600)
            .await
            .unwrap_err(),
        LightningError::Unreachable(_)
    ));
    // A file that is not a certificate is a configuration error.
    assert!(matches!(
        connect(&cfg(addr, Some("README.md"))),
        Err(LightningError::Config(_))
    ));
}
