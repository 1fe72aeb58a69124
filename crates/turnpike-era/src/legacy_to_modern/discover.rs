//! The upstream's `server/discover` result, as a legacy (2025) client's `initialize`, GET
//! stream and subscriptions need it: kept for its `ttlMs` (at most an hour) when its
//! `cacheScope` is `public`, never when it is `private`.

use std::time::{Duration, Instant};

use http::HeaderMap;
use parking_lot::Mutex;
use serde_json::{json, Value};
use turnpike_mcp::messages::{DiscoverResult, Envelope};

use crate::protocol::{modern_headers, modern_meta};
use crate::wire;
use crate::EraAdapter;

/// The last public `server/discover` result and until when it is fresh.
#[derive(Default)]
pub(crate) struct Cache(Mutex<Option<(Instant, DiscoverResult)>>);

/// The upstream's `server/discover` result (cached while fresh when its scope is public).
pub(crate) async fn discover(
    a: &EraAdapter,
    uri: &http::Uri,
    caps: &Value,
    info: &Value,
) -> Result<DiscoverResult, String> {
    let st = &a.shared().legacy;
    if let Some((until, v)) = &*st.discover.0.lock() {
        if Instant::now() < *until {
            return Ok(v.clone());
        }
    }
    let req_id = json!("turnpike-discover");
    let body = json!({
        "jsonrpc": "2.0", "id": req_id, "method": "server/discover",
        "params": {"_meta": modern_meta(caps, info)},
    });
    let mut h = HeaderMap::new();
    modern_headers(&mut h, &body);
    let resp = wire::send(&a.inner(), wire::post(uri, h, &body)).await;
    let (_, v) = wire::answer(resp, &req_id).await?;
    let answer = Envelope::of(&v);
    let Some(result) = answer.result.map(DiscoverResult::from_value) else {
        return Err(answer.error_message().unwrap_or("no result").to_owned());
    };
    if let Some(ttl) = result.public_ttl_ms() {
        *st.discover.0.lock() = Some((
            Instant::now() + Duration::from_millis(ttl.min(3_600_000)),
            result.clone(),
        ));
    }
    Ok(result)
}
