//! Typed views of the MCP messages turnpike reads or writes between the two protocol eras.
//!
//! Each type names the members turnpike looks at and keeps every other member in `extra`
//! (`#[serde(flatten)]`), so a message read into one of them and written out again means the
//! same as before. Members whose type turnpike does not check are kept as [`Value`]: a
//! message with an odd member is still read, and the member is judged where it is used.
//!
//! The `_meta` keys are those of MCP 2026-07-28 (schema `RequestMetaObject`,
//! `ResultMetaObject`, `NotificationMetaObject`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `_meta` key of a request's protocol version (2026-07-28).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key of a request's client capabilities (2026-07-28).
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The `_meta` key of a request's client identity (2026-07-28).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// The `_meta` key of a request's log level (2026-07-28).
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// The `_meta` key of a result's server identity (2026-07-28).
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// The `_meta` key naming the subscription a notification belongs to (2026-07-28).
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// A member that is present, `null` included (serde reads a `null` `Option` as absent, which
/// would drop the member when the message is written again).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A request's `params._meta` in MCP 2026-07-28: what the session used to carry, sent with
/// every request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// `io.modelcontextprotocol/protocolVersion` (a string when well formed).
    #[serde(
        rename = "io.modelcontextprotocol/protocolVersion",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<Value>,
    /// `io.modelcontextprotocol/clientCapabilities` (an object when well formed).
    #[serde(
        rename = "io.modelcontextprotocol/clientCapabilities",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_capabilities: Option<Value>,
    /// `io.modelcontextprotocol/clientInfo`.
    #[serde(
        rename = "io.modelcontextprotocol/clientInfo",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_info: Option<Value>,
    /// `io.modelcontextprotocol/logLevel`.
    #[serde(
        rename = "io.modelcontextprotocol/logLevel",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_level: Option<Value>,
    /// Every other key (`progressToken`, extensions' keys), as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RequestMeta {
    /// The `_meta` of a request message (`None` when `params._meta` is missing or not an
    /// object).
    pub fn of(message: &Value) -> Option<RequestMeta> {
        let meta = message.get("params")?.get("_meta")?;
        if !meta.is_object() {
            return None;
        }
        RequestMeta::deserialize(meta).ok()
    }

    /// The protocol version, when it is a string.
    pub fn version(&self) -> Option<&str> {
        self.protocol_version.as_ref().and_then(Value::as_str)
    }

    /// As a JSON object.
    pub fn into_map(self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

/// The params of a 2025 `initialize` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InitializeParams {
    /// The version the client asks for (a string when well formed).
    #[serde(
        rename = "protocolVersion",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<Value>,
    /// The client's capabilities (an object when well formed).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub capabilities: Option<Value>,
    /// The client's identity.
    #[serde(
        rename = "clientInfo",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_info: Option<Value>,
    /// Every other member.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl InitializeParams {
    /// The params of an `initialize` message (empty when missing or not an object).
    pub fn of(message: &Value) -> InitializeParams {
        message
            .get("params")
            .filter(|p| p.is_object())
            .and_then(|p| InitializeParams::deserialize(p).ok())
            .unwrap_or_default()
    }
}

/// The result of a 2025 `initialize`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InitializeResult {
    /// The negotiated version (a string when well formed).
    #[serde(
        rename = "protocolVersion",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol_version: Option<Value>,
    /// The server's capabilities.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub capabilities: Option<Value>,
    /// The server's identity.
    #[serde(
        rename = "serverInfo",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_info: Option<Value>,
    /// Instructions for the model (a string when well formed).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub instructions: Option<Value>,
    /// Every other member.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl InitializeResult {
    /// Read from a result object (empty when it is not an object).
    pub fn from_value(result: &Value) -> InitializeResult {
        InitializeResult::deserialize(result).unwrap_or_default()
    }
}

/// The result of `server/discover` (2026-07-28).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscoverResult {
    /// `complete` (the members below follow it in the schema).
    #[serde(
        rename = "resultType",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub result_type: Option<Value>,
    /// The protocol versions the server speaks.
    #[serde(
        rename = "supportedVersions",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub supported_versions: Option<Value>,
    /// The server's capabilities.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub capabilities: Option<Value>,
    /// Instructions for the model.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub instructions: Option<Value>,
    /// How long the result may be kept, in milliseconds.
    #[serde(
        rename = "ttlMs",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_ms: Option<Value>,
    /// `public` or `private`: who may share a kept result.
    #[serde(
        rename = "cacheScope",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub cache_scope: Option<Value>,
    /// The result's `_meta` (the server's identity under [`META_SERVER_INFO`]).
    #[serde(
        rename = "_meta",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub meta: Option<Value>,
    /// Every other member.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DiscoverResult {
    /// Read from a result object (empty when it is not an object).
    pub fn from_value(result: &Value) -> DiscoverResult {
        DiscoverResult::deserialize(result).unwrap_or_default()
    }

    /// Whether the server speaks `version` or a later one.
    pub fn speaks_at_least(&self, version: &str) -> bool {
        self.supported_versions
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|vs| vs.iter().filter_map(Value::as_str).any(|v| v >= version))
    }

    /// The server's identity in `_meta`.
    pub fn server_info(&self) -> Option<&Value> {
        self.meta.as_ref()?.get(META_SERVER_INFO)
    }

    /// How long the result may be kept and shared: its `ttlMs` when the scope is `public`.
    pub fn public_ttl_ms(&self) -> Option<u64> {
        let public = self.cache_scope.as_ref().and_then(Value::as_str) == Some("public");
        let ttl = self.ttl_ms.as_ref().and_then(Value::as_u64).unwrap_or(0);
        (public && ttl > 0).then_some(ttl)
    }

    /// As a JSON object.
    pub fn into_value(self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Map::new()))
    }
}

/// One request of an `input_required` result's `inputRequests` (2026-07-28).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputRequest {
    /// The method the client would have received as a request (a string when well formed).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub method: Option<Value>,
    /// Its params.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub params: Option<Value>,
    /// Every other member.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl InputRequest {
    /// The method, when it is a string.
    pub fn method(&self) -> Option<&str> {
        self.method.as_ref().and_then(Value::as_str)
    }
}

/// An `input_required` result (2026-07-28): the server needs the client's answers to
/// `inputRequests` and the same request again with `inputResponses` and `requestState`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputRequiredResult {
    /// `input_required`.
    #[serde(
        rename = "resultType",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub result_type: Option<Value>,
    /// The requests, by the key their answers go under (an object when well formed).
    #[serde(
        rename = "inputRequests",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_requests: Option<Value>,
    /// The server's state, echoed with the retry.
    #[serde(
        rename = "requestState",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_state: Option<Value>,
    /// Every other member.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl InputRequiredResult {
    /// The `resultType` that marks it.
    pub const RESULT_TYPE: &'static str = "input_required";

    /// The result of JSON-RPC message `message`, when it is an `input_required` result.
    pub fn of(message: &Value) -> Option<InputRequiredResult> {
        let result = message.get("result")?;
        if result.get("resultType").and_then(Value::as_str) != Some(Self::RESULT_TYPE) {
            return None;
        }
        InputRequiredResult::deserialize(result).ok()
    }

    /// The input requests by key, each read as an [`InputRequest`] (an entry that is not an
    /// object reads as an empty one); empty when `inputRequests` is not an object.
    pub fn requests(&self) -> Vec<(String, InputRequest)> {
        let Some(Value::Object(m)) = &self.input_requests else {
            return Vec::new();
        };
        m.iter()
            .map(|(k, r)| (k.clone(), InputRequest::deserialize(r).unwrap_or_default()))
            .collect()
    }

    /// The methods asked for, in key order (entries without a string method left out).
    pub fn methods(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter_map(|(_, r)| r.method().map(str::to_owned))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_meta_keeps_what_it_does_not_name() {
        let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
            META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {"sampling": {}},
            "progressToken": 7, "com.example/x": null}}});
        let m = RequestMeta::of(&msg).unwrap();
        assert_eq!(m.version(), Some("2026-07-28"));
        assert_eq!(m.client_capabilities, Some(json!({"sampling": {}})));
        assert_eq!(m.client_info, None);
        assert_eq!(
            Value::Object(m.into_map()),
            msg["params"]["_meta"],
            "written again, it says the same"
        );
        assert!(RequestMeta::of(&json!({"params": {"_meta": []}})).is_none());
        assert!(RequestMeta::of(&json!({"params": {}})).is_none());
        // A member of an odd type is still read, and judged where it is used.
        let odd = RequestMeta::of(&json!({"params": {"_meta": {META_PROTOCOL_VERSION: 20260728}}}))
            .unwrap();
        assert_eq!(odd.version(), None);
        assert_eq!(odd.protocol_version, Some(json!(20260728)));
    }

    #[test]
    fn nulls_survive_a_round_trip() {
        let r = json!({"protocolVersion": "2025-11-25", "capabilities": null, "serverInfo": {"name": "s"}, "x": 1});
        let t = InitializeResult::from_value(&r);
        assert_eq!(t.capabilities, Some(Value::Null));
        assert_eq!(serde_json::to_value(&t).unwrap(), r);
        let p = InitializeParams::of(&json!({"params": {"clientInfo": null}}));
        assert_eq!(p.client_info, Some(Value::Null));
        assert_eq!(
            InitializeParams::of(&json!({"params": 3})),
            InitializeParams::default()
        );
    }

    #[test]
    fn discover_results() {
        let d = DiscoverResult::from_value(&json!({"resultType": "complete",
            "supportedVersions": ["2025-11-25", "2026-07-28"], "capabilities": {"tools": {}},
            "ttlMs": 5000, "cacheScope": "public",
            "_meta": {META_SERVER_INFO: {"name": "s", "version": "1"}}}));
        assert!(d.speaks_at_least("2026-07-28"));
        assert!(!d.speaks_at_least("2027-01-01"));
        assert_eq!(d.server_info().unwrap()["name"], "s");
        assert_eq!(d.public_ttl_ms(), Some(5000));
        let private = DiscoverResult::from_value(&json!({"ttlMs": 5000, "cacheScope": "private"}));
        assert_eq!(private.public_ttl_ms(), None);
        assert_eq!(
            DiscoverResult::from_value(&json!("x")),
            DiscoverResult::default()
        );
    }

    #[test]
    fn input_required_results() {
        let msg = json!({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required",
            "inputRequests": {"a": {"method": "elicitation/create", "params": {"m": 1}},
                              "b": {"method": 3}, "c": "x"},
            "requestState": "s"}});
        let r = InputRequiredResult::of(&msg).unwrap();
        assert_eq!(r.methods(), vec!["elicitation/create".to_owned()]);
        let reqs = r.requests();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].1.params, Some(json!({"m": 1})));
        assert_eq!(r.request_state, Some(json!("s")));
        assert!(InputRequiredResult::of(&json!({"result": {"resultType": "complete"}})).is_none());
        assert!(InputRequiredResult::of(&json!({"error": {}})).is_none());
    }
}
