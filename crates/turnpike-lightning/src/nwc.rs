//! Nostr Wallet Connect (NIP-47): a wallet service reached through a Nostr relay.
//!
//! The connection URI `nostr+walletconnect://<wallet pubkey>?relay=<wss url>&secret=<hex>`
//! names the wallet service's public key, the relay both sides use, and the private key this
//! client signs with (the URI is therefore a secret: it is never logged and `Debug` redacts it).
//!
//! One WebSocket connection to the relay is kept per backend and re-opened on the next request
//! after it drops. On connecting, the backend subscribes (NIP-01 `["REQ", sub, filter]`) to
//! kind-23195 events authored by the wallet and tagged `p` with its own key. A request is a
//! kind-23194 event tagged `["p", <wallet>]` whose content is the NIP-04 encryption (AES-256-CBC
//! keyed by the x-coordinate of the ECDH point, `base64(ciphertext)?iv=base64(iv)`) of
//! `{"method", "params"}`, signed with BIP-340 Schnorr, published as `["EVENT", event]`. The
//! answer is matched to its request by its `e` tag; it is accepted only if its id is the SHA-256
//! of its serialized form, its signature verifies, and its author is the wallet. Anything else
//! is ignored, and a request not answered in time fails with [`LightningError::Timeout`].
//!
//! | trait method | NIP-47 method | params |
//! |---|---|---|
//! | `create_invoice` | `make_invoice` | `amount` (msat), `description`, `expiry` |
//! | `lookup_invoice` | `lookup_invoice` | `payment_hash` |
//!
//! The wallet service holds the preimages, so the backend is custodial: the L402 rail confirms
//! settlement with it once per token. A reported preimage must hash to the payment hash.
//! Wallet error codes map to [`LightningError`]: `NOT_FOUND` → `NotFound`, the others →
//! `Rejected` with an HTTP-like status (`RATE_LIMITED` 429, `UNAUTHORIZED`/`RESTRICTED` 403,
//! `NOT_IMPLEMENTED`/`UNSUPPORTED_ENCRYPTION` 501, `QUOTA_EXCEEDED` 402, `INTERNAL` 500, others
//! 400).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use k256::schnorr::{Signature, SigningKey, VerifyingKey};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use zeroize::Zeroizing;

use crate::config::NwcConfig;
use crate::{unix_now, BoxFuture, Invoice, InvoiceState, LightningBackend, LightningError};

/// Kind of a NIP-47 request event.
pub const KIND_REQUEST: u16 = 23194;
/// Kind of a NIP-47 response event.
pub const KIND_RESPONSE: u16 = 23195;
/// Kind of the wallet service's info event.
pub const KIND_INFO: u16 = 13194;

/// Largest relay message accepted, in bytes.
const MAX_MESSAGE: usize = 256 * 1024;

/// A parsed connection URI.
pub struct ConnectionUri {
    /// The wallet service's public key (x-only, 32 bytes).
    pub wallet_pubkey: [u8; 32],
    /// The relay (`wss://…`, or `ws://` to a loopback host).
    pub relay: String,
    /// The client's private key.
    pub secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ConnectionUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionUri")
            .field("wallet_pubkey", &hex::encode(self.wallet_pubkey))
            .field("relay", &self.relay)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ConnectionUri {
    /// Parses `nostr+walletconnect://<pubkey hex>?relay=<url>&secret=<hex>[&…]`. Errors never
    /// quote the URI (it holds the secret).
    pub fn parse(uri: &str) -> Result<Self, LightningError> {
        let bad = |what: &str| LightningError::Config(format!("nwc uri: {what}"));
        let rest = uri
            .trim()
            .strip_prefix("nostr+walletconnect://")
            .or_else(|| uri.trim().strip_prefix("nostr+walletconnect:"))
            .ok_or_else(|| bad("must start with nostr+walletconnect://"))?;
        let (pubkey, query) = rest
            .split_once('?')
            .ok_or_else(|| bad("has no query (relay, secret)"))?;
        let wallet_pubkey = crate::hex32(pubkey.trim_end_matches('/'))
            .ok_or_else(|| bad("wallet public key must be 64 hex digits"))?;
        VerifyingKey::from_bytes(&wallet_pubkey)
            .map_err(|_| bad("wallet public key is not a valid x-only key"))?;
        let mut relay = None;
        let mut secret = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "relay" if relay.is_none() => {
                    relay = Some(percent_decode(v).ok_or_else(|| bad("relay is not valid"))?)
                }
                "secret" => {
                    let s = crate::hex32(v).ok_or_else(|| bad("secret must be 64 hex digits"))?;
                    secret = Some(Zeroizing::new(s));
                }
                _ => {}
            }
        }
        let relay = relay.ok_or_else(|| bad("relay is missing"))?;
        let secret = secret.ok_or_else(|| bad("secret is missing"))?;
        SigningKey::from_bytes(secret.as_slice())
            .map_err(|_| bad("secret is not a valid private key"))?;
        Ok(ConnectionUri {
            wallet_pubkey,
            relay,
            secret,
        })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b.get(i) {
            Some(b'%') => {
                let h = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            Some(b'+') => {
                out.push(b' ');
                i += 1;
            }
            Some(&c) => {
                out.push(c);
                i += 1;
            }
            None => break,
        }
    }
    String::from_utf8(out).ok()
}

/// NIP-01 event id: SHA-256 of `[0, pubkey, created_at, kind, tags, content]` serialized as
/// compact JSON.
pub fn event_id(
    pubkey_hex: &str,
    created_at: u64,
    kind: u16,
    tags: &Value,
    content: &str,
) -> [u8; 32] {
    let ser = json!([0, pubkey_hex, created_at, kind, tags, content]).to_string();
    Sha256::digest(ser.as_bytes()).into()
}

/// Builds and signs (BIP-340) a NIP-01 event.
pub fn sign_event(key: &SigningKey, kind: u16, tags: Value, content: String) -> Value {
    let pubkey = hex::encode(key.verifying_key().to_bytes());
    let created_at = unix_now();
    let id = event_id(&pubkey, created_at, kind, &tags, &content);
    let aux: [u8; 32] = rand::random();
    let sig = key
        .sign_raw(&id, &aux)
        .map(|s| hex::encode(s.to_bytes()))
        .unwrap_or_default();
    json!({
        "id": hex::encode(id),
        "pubkey": pubkey,
        "created_at": created_at,
        "kind": kind,
        "tags": tags,
        "content": content,
        "sig": sig,
    })
}

/// Checks a NIP-01 event: fields present, id recomputed, signature valid. Returns the author.
pub fn verify_event(ev: &Value) -> Option<[u8; 32]> {
    let pubkey = ev.get("pubkey")?.as_str()?;
    let created_at = ev.get("created_at")?.as_u64()?;
    let kind = u16::try_from(ev.get("kind")?.as_u64()?).ok()?;
    let tags = ev.get("tags")?;
    let content = ev.get("content")?.as_str()?;
    let id = crate::hex32(ev.get("id")?.as_str()?)?;
    if event_id(pubkey, created_at, kind, tags, content) != id {
        return None;
    }
    let author = crate::hex32(pubkey)?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(ev.get("sig")?.as_str()?, &mut sig).ok()?;
    let sig = Signature::try_from(&sig[..]).ok()?;
    let vk = VerifyingKey::from_bytes(&author).ok()?;
    vk.verify_raw(&id, &sig).ok()?;
    Some(author)
}

/// The first value of the first tag named `name`.
pub fn tag_value<'a>(ev: &'a Value, name: &str) -> Option<&'a str> {
    ev.get("tags")?.as_array()?.iter().find_map(|t| {
        let t = t.as_array()?;
        if t.first()?.as_str()? == name {
            t.get(1)?.as_str()
        } else {
            None
        }
    })
}

/// The NIP-04 key shared by `secret` and the x-only public key `peer`: the x-coordinate of
/// their ECDH point.
pub fn nip04_key(secret: &[u8; 32], peer: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
    let sk = k256::SecretKey::from_slice(secret).ok()?;
    let mut sec1 = [0u8; 33];
    sec1[0] = 0x02;
    sec1[1..].copy_from_slice(peer);
    let pk = k256::PublicKey::from_sec1_bytes(&sec1).ok()?;
    let shared = k256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(shared.raw_secret_bytes());
    Some(out)
}

/// NIP-04 encryption: `base64(AES-256-CBC(plaintext))?iv=base64(iv)`.
pub fn nip04_encrypt(key: &[u8; 32], plaintext: &str) -> String {
    use cbc::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
    let iv: [u8; 16] = rand::random();
    let enc = cbc::Encryptor::<aes::Aes256>::new(key.into(), (&iv).into());
    let ct = enc.encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("{}?iv={}", b64.encode(ct), b64.encode(iv))
}

/// NIP-04 decryption; `None` for anything malformed.
pub fn nip04_decrypt(key: &[u8; 32], content: &str) -> Option<String> {
    use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
    let (ct, iv) = content.split_once("?iv=")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ct = b64.decode(ct).ok()?;
    let iv: [u8; 16] = b64.decode(iv).ok()?.try_into().ok()?;
    let dec = cbc::Decryptor::<aes::Aes256>::new(key.into(), (&iv).into());
    let pt = dec.decrypt_padded_vec_mut::<Pkcs7>(&ct).ok()?;
    String::from_utf8(pt).ok()
}

type Reply = Result<Value, LightningError>;
type Pending = Arc<Mutex<HashMap<[u8; 32], oneshot::Sender<Reply>>>>;

#[derive(Clone)]
struct Conn {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    closed: Arc<AtomicBool>,
}

struct Keys {
    wallet: [u8; 32],
    client: SigningKey,
    shared: Zeroizing<[u8; 32]>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A NIP-47 wallet service as a [`LightningBackend`]. See the module docs.
pub struct NwcBackend {
    keys: Arc<Keys>,
    relay: String,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<Conn>>,
}

impl std::fmt::Debug for NwcBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NwcBackend")
            .field("wallet", &hex::encode(self.keys.wallet))
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

impl NwcBackend {
    /// A backend from its configuration. Does not connect yet (the first request does).
    pub fn new(cfg: &NwcConfig) -> Result<Self, LightningError> {
        let uri = cfg.read_uri()?;
        let parsed = ConnectionUri::parse(&uri.0)?;
        Self::from_uri(parsed, Duration::from_secs(cfg.timeout_secs.max(1)))
    }

    /// A backend from a parsed connection URI.
    pub fn from_uri(uri: ConnectionUri, timeout: Duration) -> Result<Self, LightningError> {
        let bad = |what: String| LightningError::Config(format!("nwc relay: {what}"));
        let u: http::Uri = uri
            .relay
            .parse()
            .map_err(|e| bad(format!("{:?}: {e}", uri.relay)))?;
        let tls = match u.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => {
                return Err(bad(format!(
                    "{:?} must be wss:// (or ws:// to loopback)",
                    uri.relay
                )))
            }
        };
        let host = u
            .host()
            .ok_or_else(|| bad(format!("{:?} has no host", uri.relay)))?
            .to_string();
        if !tls && !is_loopback(&host) {
            return Err(bad(format!(
                "{:?}: ws:// is only accepted to loopback hosts; use wss://",
                uri.relay
            )));
        }
        let port = u.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let tls = if tls {
            Some(Arc::new(
                turnpike_https::tls_config().map_err(|e| bad(format!("tls: {e}")))?,
            ))
        } else {
            None
        };
        let client = SigningKey::from_bytes(uri.secret.as_slice())
            .map_err(|_| LightningError::Config("nwc uri: secret is not a valid key".into()))?;
        let shared = nip04_key(&uri.secret, &uri.wallet_pubkey)
            .ok_or_else(|| LightningError::Config("nwc uri: wallet key unusable".into()))?;
        Ok(NwcBackend {
            keys: Arc::new(Keys {
                wallet: uri.wallet_pubkey,
                client,
                shared,
            }),
            relay: uri.relay,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            tls,
            timeout,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// This client's public key (x-only hex), the one the wallet service must have authorized.
    pub fn client_pubkey(&self) -> String {
        hex::encode(self.keys.client.verifying_key().to_bytes())
    }

    async fn connection(&self) -> Result<Conn, LightningError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.closed.load(Ordering::Acquire) {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| LightningError::Unreachable(format!("relay {}: {e}", self.relay)))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| LightningError::Config(format!("nwc relay host: {e}")))?;
                let s = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        LightningError::Unreachable(format!("relay {} tls: {e}", self.relay))
                    })?;
                Box::new(s)
            }
            None => Box::new(tcp),
        };
        // Relay messages for this client are small; a relay cannot make it buffer megabytes.
        let limits = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(self.relay.as_str(), io, Some(limits))
                .await
                .map_err(|e| LightningError::Unreachable(format!("relay {}: {e}", self.relay)))?;
        let sub = hex::encode(rand::random::<[u8; 8]>());
        let req = json!(["REQ", sub, {
            "kinds": [KIND_RESPONSE],
            "authors": [hex::encode(self.keys.wallet)],
            "#p": [hex::encode(self.keys.client.verifying_key().to_bytes())],
            "since": unix_now().saturating_sub(60),
        }]);
        ws.send(Message::Text(req.to_string().into()))
            .await
            .map_err(|e| LightningError::Unreachable(format!("relay {}: {e}", self.relay)))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Conn {
            out: tx,
            pending: Arc::new(Mutex::new(HashMap::new())),
            closed: Arc::new(AtomicBool::new(false)),
        };
        tokio::spawn(run(ws, rx, conn.clone(), self.keys.clone(), sub));
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Sends one request and waits for its answer; returns the `result` object.
    pub(crate) async fn request(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Value, LightningError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let body = json!({ "method": method, "params": params }).to_string();
        let content = nip04_encrypt(&self.keys.shared, &body);
        let tags = json!([
            ["p", hex::encode(self.keys.wallet)],
            ["encryption", "nip04"]
        ]);
        let ev = sign_event(&self.keys.client, KIND_REQUEST, tags, content);
        let id = ev
            .get("id")
            .and_then(Value::as_str)
            .and_then(crate::hex32)
            .ok_or_else(|| LightningError::Protocol("signing the request failed".into()))?;
        let conn = tokio::time::timeout_at(deadline, self.connection())
            .await
            .map_err(|_| LightningError::Timeout)??;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(id, tx);
        if conn.out.send(json!(["EVENT", ev]).to_string()).is_err() {
            conn.pending.lock().remove(&id);
            return Err(LightningError::Unreachable(
                "relay connection closed".into(),
            ));
        }
        let answer = match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => {
                conn.pending.lock().remove(&id);
                return Err(LightningError::Timeout);
            }
            Ok(Err(_)) => {
                return Err(LightningError::Unreachable(
                    "relay connection closed before the wallet answered".into(),
                ))
            }
            Ok(Ok(r)) => r?,
        };
        if let Some(err) = answer.get("error").filter(|e| !e.is_null()) {
            return Err(wallet_error(err));
        }
        if answer.get("result_type").and_then(Value::as_str) != Some(method) {
            return Err(LightningError::Protocol(format!(
                "answer to {method} has another result_type"
            )));
        }
        match answer.get("result") {
            Some(r) if r.is_object() => Ok(r.clone()),
            _ => Err(LightningError::Protocol(format!(
                "answer to {method} has no result"
            ))),
        }
    }
}

fn wallet_error(err: &Value) -> LightningError {
    let code = err.get("code").and_then(Value::as_str).unwrap_or("OTHER");
    let message: String = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let status = match code {
        "NOT_FOUND" => return LightningError::NotFound,
        "RATE_LIMITED" => 429,
        "UNAUTHORIZED" | "RESTRICTED" => 403,
        "NOT_IMPLEMENTED" | "UNSUPPORTED_ENCRYPTION" => 501,
        "QUOTA_EXCEEDED" => 402,
        "INTERNAL" => 500,
        _ => 400,
    };
    let code: String = code.chars().take(40).collect();
    LightningError::Rejected {
        status,
        message: format!("{code}: {message}"),
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The connection task: writes queued requests, reads relay messages, hands verified answers
/// to their waiting requests. When it ends, every waiting request fails.
async fn run(
    ws: tokio_tungstenite::WebSocketStream<Box<dyn Io>>,
    mut rx: mpsc::UnboundedReceiver<String>,
    conn: Conn,
    keys: Arc<Keys>,
    sub: String,
) {
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                if sink.send(Message::Text(out.into())).await.is_err() {
                    break;
                }
            }
            msg = stream.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                if !handle(text.as_str(), &conn, &keys, &sub) {
                    break;
                }
            }
        }
    }
    conn.closed.store(true, Ordering::Release);
    conn.pending.lock().clear();
    let _ = sink.close().await;
}

/// Handles one relay message; `false` ends the connection.
fn handle(text: &str, conn: &Conn, keys: &Keys, sub: &str) -> bool {
    let Ok(Value::Array(msg)) = serde_json::from_str::<Value>(text) else {
        return true;
    };
    match msg.first().and_then(Value::as_str) {
        Some("EVENT") => {
            if msg.get(1).and_then(Value::as_str) != Some(sub) {
                return true;
            }
            if let Some(ev) = msg.get(2) {
                deliver(ev, conn, keys);
            }
        }
        Some("OK") => {
            let accepted = msg.get(2).and_then(Value::as_bool).unwrap_or(false);
            if !accepted {
                if let Some(id) = msg.get(1).and_then(Value::as_str).and_then(crate::hex32) {
                    if let Some(tx) = conn.pending.lock().remove(&id) {
                        let why: String = msg
                            .get(3)
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .chars()
                            .take(200)
                            .collect();
                        let _ = tx.send(Err(LightningError::Unreachable(format!(
                            "relay refused the request: {why}"
                        ))));
                    }
                }
            }
        }
        Some("CLOSED") if msg.get(1).and_then(Value::as_str) == Some(sub) => {
            tracing::warn!(target: "turnpike::lightning", "nwc relay closed the subscription");
            return false;
        }
        _ => {}
    }
    true
}

/// Verifies a response event and hands its decrypted content to the request it answers.
fn deliver(ev: &Value, conn: &Conn, keys: &Keys) {
    if ev.get("kind").and_then(Value::as_u64) != Some(u64::from(KIND_RESPONSE)) {
        return;
    }
    let Some(author) = verify_event(ev) else {
        tracing::debug!(target: "turnpike::lightning", "nwc: dropped an event with a bad id or signature");
        return;
    };
    if !turnpike_core::ct_eq(&author, &keys.wallet) {
        tracing::debug!(target: "turnpike::lightning", "nwc: dropped an event not from the wallet");
        return;
    }
    let Some(req) = tag_value(ev, "e").and_then(crate::hex32) else {
        return;
    };
    let Some(tx) = conn.pending.lock().remove(&req) else {
        return;
    };
    let reply = ev
        .get("content")
        .and_then(Value::as_str)
        .and_then(|c| nip04_decrypt(&keys.shared, c))
        .and_then(|pt| serde_json::from_str::<Value>(&pt).ok())
        .filter(Value::is_object)
        .ok_or_else(|| LightningError::Protocol("wallet answer does not decrypt".into()));
    let _ = tx.send(reply);
}

impl LightningBackend for NwcBackend {
    fn name(&self) -> &'static str {
        "nwc"
    }

    fn is_custodial(&self) -> bool {
        true
    }

    fn create_invoice<'a>(
        &'a self,
        amount_msat: u64,
        memo: &'a str,
        expiry_secs: u64,
    ) -> BoxFuture<'a, Result<Invoice, LightningError>> {
        Box::pin(async move {
            let r = self
                .request(
                    "make_invoice",
                    json!({ "amount": amount_msat, "description": memo, "expiry": expiry_secs }),
                )
                .await?;
            let bolt11 = r
                .get("invoice")
                .and_then(Value::as_str)
                .ok_or_else(|| LightningError::Protocol("make_invoice: no invoice".into()))?;
            let hash = r
                .get("payment_hash")
                .and_then(Value::as_str)
                .and_then(crate::hex32)
                .ok_or_else(|| LightningError::Protocol("make_invoice: no payment_hash".into()))?;
            crate::checked_invoice(bolt11.to_string(), hash, amount_msat)
        })
    }

    fn lookup_invoice<'a>(
        &'a self,
        payment_hash: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<InvoiceState, LightningError>> {
        Box::pin(async move {
            let params = json!({ "payment_hash": hex::encode(payment_hash) });
            // A lookup is idempotent: when the connection dropped under it, try once more on a
            // fresh one.
            let r = match self.request("lookup_invoice", params.clone()).await {
                Err(LightningError::Unreachable(_)) => {
                    self.request("lookup_invoice", params).await?
                }
                other => other?,
            };
            lookup_state(&r, payment_hash)
        })
    }
}

/// Reads a `lookup_invoice` result.
fn lookup_state(r: &Value, payment_hash: &[u8; 32]) -> Result<InvoiceState, LightningError> {
    if let Some(h) = r.get("payment_hash").and_then(Value::as_str) {
        if crate::hex32(h).as_ref() != Some(payment_hash) {
            return Err(LightningError::Protocol(
                "lookup_invoice answered for another payment hash".into(),
            ));
        }
    }
    let settled_at = r.get("settled_at").and_then(Value::as_u64).unwrap_or(0);
    let settled = match r.get("state").and_then(Value::as_str) {
        Some("settled") => true,
        Some("pending") => false,
        Some("expired") | Some("failed") => return Ok(InvoiceState::Expired),
        Some(_) => {
            return Err(LightningError::Protocol(
                "lookup_invoice: unknown state".into(),
            ))
        }
        None => settled_at > 0,
    };
    if settled {
        let preimage = match r.get("preimage").and_then(Value::as_str) {
            Some(p) if !p.is_empty() => {
                let p = crate::hex32(p)
                    .ok_or_else(|| LightningError::Protocol("preimage is not 32 bytes".into()))?;
                let h: [u8; 32] = Sha256::digest(p).into();
                if &h != payment_hash {
                    return Err(LightningError::Protocol(
                        "preimage does not hash to the payment hash".into(),
                    ));
                }
                Some(p)
            }
            _ => None,
        };
        return Ok(InvoiceState::Settled { preimage });
    }
    match r.get("expires_at").and_then(Value::as_u64) {
        Some(t) if t <= unix_now() => Ok(InvoiceState::Expired),
        _ => Ok(InvoiceState::Open),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_parses_and_redacts() {
        let sk = [7u8; 32];
        let wallet = SigningKey::from_bytes(&[9u8; 32]).unwrap();
        let uri = format!(
            "nostr+walletconnect://{}?relay=wss%3A%2F%2Frelay.example.com%2Fv1&secret={}",
            hex::encode(wallet.verifying_key().to_bytes()),
            hex::encode(sk)
        );
        let p = ConnectionUri::parse(&uri).unwrap();
        assert_eq!(p.relay, "wss://relay.example.com/v1");
        assert_eq!(*p.secret, sk);
        assert!(!format!("{p:?}").contains(&hex::encode(sk)));
        let err = ConnectionUri::parse(&uri.replace("secret=", "s=")).unwrap_err();
        assert!(!err.to_string().contains(&hex::encode(sk)));
        let b = NwcBackend::from_uri(p, Duration::from_secs(1)).unwrap();
        assert!(!format!("{b:?}").contains(&hex::encode(sk)));
        let plain = ConnectionUri::parse(&uri.replace("wss%3A", "ws%3A")).unwrap();
        assert!(NwcBackend::from_uri(plain, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn nip04_round_trip_and_event_signature() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let pa: [u8; 32] = SigningKey::from_bytes(&a)
            .unwrap()
            .verifying_key()
            .to_bytes()
            .into();
        let pb: [u8; 32] = SigningKey::from_bytes(&b)
            .unwrap()
            .verifying_key()
            .to_bytes()
            .into();
        let kab = nip04_key(&a, &pb).unwrap();
        let kba = nip04_key(&b, &pa).unwrap();
        assert_eq!(*kab, *kba);
        let c = nip04_encrypt(&kab, "hello");
        assert_eq!(nip04_decrypt(&kba, &c).as_deref(), Some("hello"));
        assert!(nip04_decrypt(&[0u8; 32], &c).is_none_or(|s| s != "hello"));
        let ev = sign_event(
            &SigningKey::from_bytes(&a).unwrap(),
            1,
            json!([]),
            "x".into(),
        );
        assert_eq!(verify_event(&ev), Some(pa));
        let mut bad = ev.clone();
        bad["content"] = json!("y");
        assert_eq!(verify_event(&bad), None);
    }

    #[test]
    fn lookup_states() {
        let pre = [5u8; 32];
        let h: [u8; 32] = Sha256::digest(pre).into();
        let hx = hex::encode(h);
        let open = json!({"payment_hash": hx, "settled_at": null, "expires_at": unix_now() + 60});
        assert_eq!(lookup_state(&open, &h), Ok(InvoiceState::Open));
        let done = json!({"payment_hash": hx, "settled_at": 5, "preimage": hex::encode(pre)});
        assert_eq!(
            lookup_state(&done, &h),
            Ok(InvoiceState::Settled {
                preimage: Some(pre)
            })
        );
        let wrong =
            json!({"payment_hash": hx, "state": "settled", "preimage": hex::encode([6u8; 32])});
        assert!(matches!(
            lookup_state(&wrong, &h),
            Err(LightningError::Protocol(_))
        ));
        let other = json!({"payment_hash": hex::encode([0u8; 32]), "state": "pending"});
        assert!(lookup_state(&other, &h).is_err());
        assert_eq!(
            wallet_error(&json!({"code": "NOT_FOUND", "message": "no"})),
            LightningError::NotFound
        );
    }
}
