//! Typed views of the MCP messages turnpike reads or writes between the two protocol eras.
//!
//! Each type names the members turnpike looks at and keeps every other member in `extra`
//! (`#[serde(flatten)]`), so a message read into one of them and written out again means the
//! same as before. Members whose type turnpike does not check are kept as [`Value`]: a
//! message with an odd member is still read, and the member is judged where it is used.
//! Members turnpike only tests (a capability's `listChanged`, a filter's flags) are read
//! leniently: one of another type reads as absent, and its neighbours are still read.
//!
//! [`Envelope`] is the one view that borrows: the JSON-RPC members of any message passing
//! through (`id`, `method`, `result`, `error`), read without copying it and without judging
//! its shape (that is [`crate::envelope`]'s job at the gate). Its writing counterparts
//! ([`set_id`], [`set_params`], [`set_request_meta`]) change one member of a message in place
//! and leave the rest unread, for the paths every call takes (an answer relayed under another
//! id, a request's `_meta` swapped without copying its arguments).
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

/// The `params` member of a retried request that carries the client's answers to an
/// `input_required` result (2026-07-28).
pub const INPUT_RESPONSES: &str = "inputResponses";
/// The `params` member of a retried request that echoes the server's `requestState`
/// (2026-07-28).
pub const REQUEST_STATE: &str = "requestState";

/// A member that is present, `null` included (serde reads a `null` `Option` as absent, which
/// would drop the member when the message is written again).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One of these types as a JSON object (they all serialise to one; empty should that fail).
fn object<T: Serialize>(t: &T) -> Map<String, Value> {
    match serde_json::to_value(t) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// A member of type `T`, or absent when it has another type (the message is still read).
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(T::deserialize(Value::deserialize(d)?).ok())
}

/// The strings of an array member (other entries, or a member that is not an array, read as
/// none).
fn strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(a) => a
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// The JSON-RPC members of one message, borrowed from it: what the translation reads of every
/// message that passes through. Nothing is judged: a member of an odd type reads as it is (or,
/// for `method`, as no method).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Envelope<'a> {
    /// `id` (a request's or a response's).
    pub id: Option<&'a Value>,
    /// `method`, when it is a string (a request or a notification).
    pub method: Option<&'a str>,
    /// Whether a `method` member is present at all, of whatever type.
    pub has_method: bool,
    /// `params`.
    pub params: Option<&'a Value>,
    /// `result` (a response).
    pub result: Option<&'a Value>,
    /// `error` (a response).
    pub error: Option<&'a Value>,
}

impl<'a> Envelope<'a> {
    /// The members of `message` (all absent when it is not an object).
    pub fn of(message: &'a Value) -> Envelope<'a> {
        let m = message.get("method");
        Envelope {
            id: message.get("id"),
            method: m.and_then(Value::as_str),
            has_method: m.is_some(),
            params: message.get("params"),
            result: message.get("result"),
            error: message.get("error"),
        }
    }

    /// A response (no `method`) whose `id` is `id`.
    pub fn is_response_to(&self, id: &Value) -> bool {
        !self.has_method && self.id == Some(id)
    }

    /// A message from the other side that expects an answer: a `method` and an `id`.
    pub fn is_request(&self) -> bool {
        self.has_method && self.id.is_some()
    }

    /// A message with a `method` and no `id`.
    pub fn is_notification(&self) -> bool {
        self.has_method && self.id.is_none()
    }

    /// `error.code`, when it is an integer.
    pub fn error_code(&self) -> Option<i64> {
        self.error?.get("code")?.as_i64()
    }

    /// `error.message`, when it is a string.
    pub fn error_message(&self) -> Option<&'a str> {
        self.error?.get("message")?.as_str()
    }

    /// The member `key` of `params`.
    pub fn param(&self, key: &str) -> Option<&'a Value> {
        self.params?.get(key)
    }

    /// The member `key` of `params`, when it is a string.
    pub fn param_str(&self, key: &str) -> Option<&'a str> {
        self.param(key)?.as_str()
    }

    /// `params._meta.progressToken`.
    pub fn progress_token(&self) -> Option<&'a Value> {
        self.param("_meta")?.get("progressToken")
    }
}

/// Most extension names read from a request's client capabilities
/// ([`RequestMeta::client_extensions`]).
pub const MAX_EXTENSIONS: usize = 32;

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
    /// `progressToken`: the token the sender's progress notifications for this request carry
    /// (the same key in both eras).
    #[serde(
        rename = "progressToken",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub progress_token: Option<Value>,
    /// Every other key (extensions' keys), as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RequestMeta {
    /// The `_meta` of a request message (`None` when `params._meta` is missing or not an
    /// object).
    pub fn of(message: &Value) -> Option<RequestMeta> {
        RequestMeta::from_value(message.get("params")?.get("_meta")?)
    }

    /// Read from a `_meta` object (`None` when it is not an object).
    pub fn from_value(meta: &Value) -> Option<RequestMeta> {
        if !meta.is_object() {
            return None;
        }
        RequestMeta::deserialize(meta).ok()
    }

    /// Whether it has no key at all.
    pub fn is_empty(&self) -> bool {
        *self == RequestMeta::default()
    }

    /// The extensions the client advertised in `io.modelcontextprotocol/clientCapabilities`
    /// (`extensions`: an object whose members not `null` name one each), at most
    /// [`MAX_EXTENSIONS`] of them.
    pub fn client_extensions(&self) -> Vec<String> {
        self.client_capabilities
            .as_ref()
            .and_then(|c| c.get("extensions"))
            .and_then(Value::as_object)
            .map(|e| {
                e.iter()
                    .filter(|(_, v)| !v.is_null())
                    .take(MAX_EXTENSIONS)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `self` with every key of `over` put in, replacing a key of the same name.
    pub fn overlay(self, over: RequestMeta) -> RequestMeta {
        let mut extra = self.extra;
        extra.extend(over.extra);
        RequestMeta {
            protocol_version: over.protocol_version.or(self.protocol_version),
            client_capabilities: over.client_capabilities.or(self.client_capabilities),
            client_info: over.client_info.or(self.client_info),
            log_level: over.log_level.or(self.log_level),
            progress_token: over.progress_token.or(self.progress_token),
            extra,
        }
    }

    /// The protocol version, when it is a string.
    pub fn version(&self) -> Option<&str> {
        self.protocol_version.as_ref().and_then(Value::as_str)
    }

    /// As a JSON object.
    pub fn into_map(self) -> Map<String, Value> {
        self.to_map()
    }

    /// As a JSON object, leaving `self` as it is.
    pub fn to_map(&self) -> Map<String, Value> {
        object(self)
    }
}

/// Puts `id` as the `id` of JSON-RPC message `message` (an object; anything else is left as
/// it is). Only that member is touched: the rest of the message is not read again, which keeps
/// an answer relayed under another id as cheap as passing it on.
pub fn set_id(message: &mut Value, id: Value) {
    if let Value::Object(m) = message {
        m.insert("id".to_owned(), id);
    }
}

/// Puts `params` as the `params` of JSON-RPC message `message` (an object; anything else is
/// left as it is); `None` takes the member out.
pub fn set_params(message: &mut Value, params: Option<Value>) {
    if let Value::Object(m) = message {
        match params {
            Some(p) => {
                m.insert("params".to_owned(), p);
            }
            None => {
                m.remove("params");
            }
        }
    }
}

/// Puts `meta` as `params._meta` of request `message` (an object; anything else is left as
/// it is), creating `params` when it is missing or not an object; `None` takes `_meta` out.
/// Only `_meta` is written: the other members of `params` (a call's arguments) are neither read
/// nor copied, so this costs the same for every request whatever its size.
pub fn set_request_meta(message: &mut Value, meta: Option<RequestMeta>) {
    let Value::Object(m) = message else {
        return;
    };
    match meta {
        Some(meta) => {
            let params = m
                .entry("params")
                .or_insert_with(|| Value::Object(Map::new()));
            if !params.is_object() {
                *params = Value::Object(Map::new());
            }
            if let Value::Object(p) = params {
                p.insert("_meta".to_owned(), Value::Object(meta.into_map()));
            }
        }
        None => {
            if let Some(Value::Object(p)) = m.get_mut("params") {
                p.remove("_meta");
            }
        }
    }
}

/// A JSON-RPC error object: `{"code", "message", "data"?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code.
    pub code: i64,
    /// What went wrong, for a person.
    pub message: String,
    /// Anything more (left out when absent).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error without `data`.
    pub fn new(code: i64, message: impl Into<String>) -> ErrorObject {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with `data`.
    pub fn with_data(self, data: Value) -> ErrorObject {
        ErrorObject {
            data: Some(data),
            ..self
        }
    }

    /// The JSON-RPC error response carrying it: `{"jsonrpc": "2.0", "id": <id or null>,
    /// "error": …}`.
    pub fn response(self, id: Option<&Value>) -> Value {
        let mut m = Map::new();
        m.insert("jsonrpc".to_owned(), Value::from("2.0"));
        m.insert("id".to_owned(), id.cloned().unwrap_or(Value::Null));
        m.insert("error".to_owned(), Value::Object(object(&self)));
        Value::Object(m)
    }
}

/// The `params` of a request or a notification: its `_meta` and every other member.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// `_meta` (an object when well formed).
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

impl Params {
    /// Read from a `params` value (`None` when it is not an object).
    pub fn from_value(params: &Value) -> Option<Params> {
        if !params.is_object() {
            return None;
        }
        Params::deserialize(params).ok()
    }

    /// Whether it has no member at all.
    pub fn is_empty(&self) -> bool {
        self.meta.is_none() && self.extra.is_empty()
    }

    /// As a JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(object(&self))
    }
}

/// A notification's `_meta` in MCP 2026-07-28 (schema `NotificationMetaObject`): the
/// subscription it belongs to, and every other key as sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotificationMeta {
    /// `io.modelcontextprotocol/subscriptionId`: the id of the `subscriptions/listen` request
    /// whose stream carries the notification.
    #[serde(
        rename = "io.modelcontextprotocol/subscriptionId",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub subscription_id: Option<Value>,
    /// Every other key.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl NotificationMeta {
    /// Read from a `_meta` value (`None` when it is not an object).
    pub fn from_value(meta: &Value) -> Option<NotificationMeta> {
        if !meta.is_object() {
            return None;
        }
        NotificationMeta::deserialize(meta).ok()
    }

    /// Whether it has no key at all.
    pub fn is_empty(&self) -> bool {
        self.subscription_id.is_none() && self.extra.is_empty()
    }

    /// As a JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(object(&self))
    }
}

/// A JSON-RPC notification: a `method` (a string) and no `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The method.
    pub method: String,
    /// `params` (an object when well formed).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub params: Option<Value>,
    /// Every other member (`jsonrpc`, anything else the sender put in).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Notification {
    /// Read from a message (`None` when it is not an object with a string `method` and no
    /// `id`).
    pub fn of(message: &Value) -> Option<Notification> {
        if !Envelope::of(message).is_notification() {
            return None;
        }
        Notification::deserialize(message).ok()
    }

    /// Its params as [`Params`] (`None` when absent or not an object).
    pub fn params(&self) -> Option<Params> {
        Params::from_value(self.params.as_ref()?)
    }

    /// As a JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(object(&self))
    }
}

/// The requests a server makes of a client for input, in both eras: a 2025 server sends them
/// as JSON-RPC requests, a 2026-07-28 server names them in an `input_required` result. Each
/// needs a client capability of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `elicitation/create`, capability `elicitation`.
    Elicitation,
    /// `sampling/createMessage`, capability `sampling`.
    Sampling,
    /// `roots/list`, capability `roots`.
    Roots,
}

impl InputKind {
    /// Every kind.
    pub const ALL: [InputKind; 3] = [
        InputKind::Elicitation,
        InputKind::Sampling,
        InputKind::Roots,
    ];

    /// The kind of request `method` (`None`: not a request for input).
    pub fn of_method(method: &str) -> Option<InputKind> {
        InputKind::ALL.into_iter().find(|k| k.method() == method)
    }

    /// Its method.
    pub fn method(self) -> &'static str {
        match self {
            InputKind::Elicitation => "elicitation/create",
            InputKind::Sampling => "sampling/createMessage",
            InputKind::Roots => "roots/list",
        }
    }

    /// The client capability that declares it.
    pub fn capability(self) -> &'static str {
        match self {
            InputKind::Elicitation => "elicitation",
            InputKind::Sampling => "sampling",
            InputKind::Roots => "roots",
        }
    }
}

/// A client's capabilities (a 2025 `initialize`'s or a 2026-07-28 request's
/// `io.modelcontextprotocol/clientCapabilities`), as far as turnpike reads them: which input
/// requests it answers. A capability is declared when its member is present and not `null`,
/// whatever its value. Read only (the capabilities travel on as they came).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct ClientCapabilities {
    /// `elicitation`.
    #[serde(default, deserialize_with = "declared")]
    pub elicitation: bool,
    /// `sampling`.
    #[serde(default, deserialize_with = "declared")]
    pub sampling: bool,
    /// `roots`.
    #[serde(default, deserialize_with = "declared")]
    pub roots: bool,
}

/// A member that is present and not `null`, read without copying it.
fn declared<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Option::<serde::de::IgnoredAny>::deserialize(d).map(|o| o.is_some())
}

impl ClientCapabilities {
    /// Read from a capabilities value (none declared when it is not an object).
    pub fn of(capabilities: &Value) -> ClientCapabilities {
        if !capabilities.is_object() {
            return ClientCapabilities::default();
        }
        ClientCapabilities::deserialize(capabilities).unwrap_or_default()
    }

    /// Whether the client answers requests of `kind`.
    pub fn declares(&self, kind: InputKind) -> bool {
        match kind {
            InputKind::Elicitation => self.elicitation,
            InputKind::Sampling => self.sampling,
            InputKind::Roots => self.roots,
        }
    }

    /// Whether the client answers any request for input.
    pub fn answers_any(&self) -> bool {
        self.elicitation || self.sampling || self.roots
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

/// One list's server capability (`tools`, `prompts`, `resources`): whether the server sends
/// that list's `list_changed` notification, and (resources) whether it takes subscriptions.
/// Read only; members of another type read as absent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ListCapability {
    /// `listChanged`.
    #[serde(rename = "listChanged", default, deserialize_with = "lenient")]
    pub list_changed: Option<bool>,
    /// `subscribe` (resources only).
    #[serde(default, deserialize_with = "lenient")]
    pub subscribe: Option<bool>,
}

/// The lists a server can announce changes of, with the capability and the filter flag that
/// name each in both eras.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `tools`: `notifications/tools/list_changed`, filter flag `toolsListChanged`.
    Tools,
    /// `prompts`: `notifications/prompts/list_changed`, filter flag `promptsListChanged`.
    Prompts,
    /// `resources`: `notifications/resources/list_changed`, filter flag `resourcesListChanged`.
    Resources,
}

impl ListKind {
    /// Every kind.
    pub const ALL: [ListKind; 3] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources];

    /// The notification announcing a change of this list.
    pub fn notification(self) -> &'static str {
        match self {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
            ListKind::Resources => "notifications/resources/list_changed",
        }
    }
}

/// A server's capabilities (a 2025 `initialize` result's or a 2026-07-28 `server/discover`
/// result's `capabilities`), as far as turnpike reads them: the list-changed notifications and
/// resource subscriptions. Read only (the capabilities travel on as they came); every other
/// capability is kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ServerCapabilities {
    /// `tools`.
    #[serde(default, deserialize_with = "lenient")]
    pub tools: Option<ListCapability>,
    /// `prompts`.
    #[serde(default, deserialize_with = "lenient")]
    pub prompts: Option<ListCapability>,
    /// `resources`.
    #[serde(default, deserialize_with = "lenient")]
    pub resources: Option<ListCapability>,
    /// Every other capability.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ServerCapabilities {
    /// Read from a capabilities object (empty when it is absent or not an object).
    pub fn of(capabilities: Option<&Value>) -> ServerCapabilities {
        capabilities
            .filter(|c| c.is_object())
            .and_then(|c| ServerCapabilities::deserialize(c).ok())
            .unwrap_or_default()
    }

    fn list(&self, kind: ListKind) -> Option<&ListCapability> {
        match kind {
            ListKind::Tools => self.tools.as_ref(),
            ListKind::Prompts => self.prompts.as_ref(),
            ListKind::Resources => self.resources.as_ref(),
        }
    }

    /// Whether the server announces changes of `kind` (`listChanged: true`).
    pub fn list_changed(&self, kind: ListKind) -> bool {
        self.list(kind).and_then(|c| c.list_changed) == Some(true)
    }

    /// Whether the server takes `resources/subscribe` (`resources.subscribe: true`).
    pub fn can_subscribe(&self) -> bool {
        self.resources.as_ref().and_then(|c| c.subscribe) == Some(true)
    }
}

/// The `notifications` filter of a `subscriptions/listen` request (2026-07-28), and the
/// honoured filter its acknowledgement carries back. A flag of another type than a boolean
/// reads as not set; `resourceSubscriptions` keeps only its strings. Written, a flag that is
/// not set and an empty URI list are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionFilter {
    /// `promptsListChanged`.
    #[serde(
        rename = "promptsListChanged",
        default,
        deserialize_with = "lenient_flag",
        skip_serializing_if = "is_false"
    )]
    pub prompts_list_changed: bool,
    /// `resourceSubscriptions`: the URIs whose `notifications/resources/updated` is wanted.
    #[serde(
        rename = "resourceSubscriptions",
        default,
        deserialize_with = "strings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_subscriptions: Vec<String>,
    /// `resourcesListChanged`.
    #[serde(
        rename = "resourcesListChanged",
        default,
        deserialize_with = "lenient_flag",
        skip_serializing_if = "is_false"
    )]
    pub resources_list_changed: bool,
    /// `toolsListChanged`.
    #[serde(
        rename = "toolsListChanged",
        default,
        deserialize_with = "lenient_flag",
        skip_serializing_if = "is_false"
    )]
    pub tools_list_changed: bool,
    /// Every other member.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn lenient_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(lenient::<D, bool>(d)? == Some(true))
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl SubscriptionFilter {
    /// Read from a filter object (empty when it is absent or not an object).
    pub fn of(filter: Option<&Value>) -> SubscriptionFilter {
        filter
            .filter(|f| f.is_object())
            .and_then(|f| SubscriptionFilter::deserialize(f).ok())
            .unwrap_or_default()
    }

    /// Whether the filter asks for changes of `kind`.
    pub fn list_changed(&self, kind: ListKind) -> bool {
        match kind {
            ListKind::Tools => self.tools_list_changed,
            ListKind::Prompts => self.prompts_list_changed,
            ListKind::Resources => self.resources_list_changed,
        }
    }

    /// Asks (or stops asking) for changes of `kind`.
    pub fn set_list_changed(&mut self, kind: ListKind, on: bool) {
        match kind {
            ListKind::Tools => self.tools_list_changed = on,
            ListKind::Prompts => self.prompts_list_changed = on,
            ListKind::Resources => self.resources_list_changed = on,
        }
    }

    /// Whether it asks for nothing at all.
    pub fn is_empty(&self) -> bool {
        !ListKind::ALL.iter().any(|&k| self.list_changed(k))
            && self.resource_subscriptions.is_empty()
            && self.extra.is_empty()
    }

    /// Whether notification `message` is one the filter asks for.
    pub fn covers(&self, message: &Value) -> bool {
        let e = Envelope::of(message);
        match e.method {
            Some("notifications/resources/updated") => {
                let uri = e.param_str("uri");
                self.resource_subscriptions
                    .iter()
                    .any(|u| Some(u.as_str()) == uri)
            }
            Some(m) => ListKind::ALL
                .iter()
                .any(|&k| k.notification() == m && self.list_changed(k)),
            None => false,
        }
    }

    /// As a JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(object(&self))
    }
}

/// The params of a request retried after an `input_required` result (2026-07-28): the
/// request's own params with the client's answers and the server's state added. Everything
/// the request carried besides is kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryParams {
    /// `inputResponses`: the answers, by the keys of the `inputRequests` they answer.
    #[serde(
        rename = "inputResponses",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub input_responses: Option<Value>,
    /// `requestState`, echoed from the `input_required` result (a string when well formed).
    #[serde(
        rename = "requestState",
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_state: Option<Value>,
    /// Every other member (the request's own params).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RetryParams {
    /// The params of request `message` (`None` when `params` is missing or not an object).
    pub fn of(message: &Value) -> Option<RetryParams> {
        let params = message.get("params").filter(|p| p.is_object())?;
        RetryParams::deserialize(params).ok()
    }

    /// The `requestState`, when it is a string.
    pub fn request_state(&self) -> Option<&str> {
        self.request_state.as_ref().and_then(Value::as_str)
    }

    /// As a JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(object(&self))
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
        Value::Object(object(&self))
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

    /// The extensions a 2026-07-28 request advertises: the members of
    /// `clientCapabilities.extensions` that are not null, at most [`MAX_EXTENSIONS`].
    #[test]
    fn client_extensions_are_read() {
        let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "t", "_meta": {
                "io.modelcontextprotocol/clientCapabilities": {"extensions": {
                    "org.x402/payment": {}, "io.example/off": null, "io.example/on": true}}}}});
        let m = RequestMeta::of(&msg).unwrap();
        assert_eq!(m.client_extensions(), ["io.example/on", "org.x402/payment"]);
        let none = json!({"params": {"_meta": {
            "io.modelcontextprotocol/clientCapabilities": {"extensions": []}}}});
        assert!(RequestMeta::of(&none)
            .unwrap()
            .client_extensions()
            .is_empty());
        let many: Map<String, Value> = (0..100).map(|i| (format!("e{i}"), json!({}))).collect();
        let lots = json!({"params": {"_meta": {
            "io.modelcontextprotocol/clientCapabilities": {"extensions": many}}}});
        assert_eq!(
            RequestMeta::of(&lots).unwrap().client_extensions().len(),
            MAX_EXTENSIONS
        );
    }

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
    fn request_meta_names_the_progress_token() {
        let m = RequestMeta::from_value(&json!({"progressToken": 5, "x/y": 1})).unwrap();
        assert_eq!(m.progress_token, Some(json!(5)));
        assert_eq!(m.extra.len(), 1);
        let rest = RequestMeta {
            progress_token: None,
            ..m
        };
        assert!(!rest.is_empty());
        assert_eq!(Value::Object(rest.into_map()), json!({"x/y": 1}));
        assert!(RequestMeta::default().is_empty());
        assert!(RequestMeta::from_value(&json!("x")).is_none());
    }

    #[test]
    fn request_meta_is_overlaid_and_set() {
        let client = RequestMeta::from_value(
            &json!({"progressToken": 1, META_LOG_LEVEL: "debug", "x": 1, META_CLIENT_INFO: "c"}),
        )
        .unwrap();
        let session = RequestMeta {
            protocol_version: Some(json!("2026-07-28")),
            client_capabilities: Some(json!({})),
            log_level: Some(json!("info")),
            ..RequestMeta::default()
        };
        let m = client.overlay(session);
        assert_eq!(
            Value::Object(m.to_map()),
            json!({"progressToken": 1, META_LOG_LEVEL: "info", "x": 1, META_CLIENT_INFO: "c",
                META_PROTOCOL_VERSION: "2026-07-28", META_CLIENT_CAPABILITIES: {}})
        );
        let mut r = json!({"id": 1, "method": "tools/call", "params": {"name": "t", "_meta": 3}});
        set_request_meta(
            &mut r,
            Some(RequestMeta::from_value(&json!({"k": 1})).unwrap()),
        );
        assert_eq!(r["params"], json!({"name": "t", "_meta": {"k": 1}}));
        set_request_meta(&mut r, None);
        assert_eq!(r["params"], json!({"name": "t"}));
        let mut bare = json!({"id": 1, "method": "tools/list", "params": [1]});
        set_request_meta(&mut bare, Some(RequestMeta::default()));
        assert_eq!(bare["params"], json!({"_meta": {}}));
        let mut odd = json!("x");
        set_request_meta(&mut odd, Some(RequestMeta::default()));
        assert_eq!(odd, json!("x"));
    }

    #[test]
    fn envelope_members_are_set_in_place() {
        let mut v = json!({"jsonrpc": "2.0", "id": 1, "result": {"a": [1]}});
        set_id(&mut v, json!("c"));
        assert_eq!(
            v,
            json!({"jsonrpc": "2.0", "id": "c", "result": {"a": [1]}})
        );
        let mut odd = json!([1]);
        set_id(&mut odd, json!(2));
        set_params(&mut odd, Some(json!({})));
        assert_eq!(
            odd,
            json!([1]),
            "a message that is not an object is left alone"
        );
        let mut r = json!({"id": 1, "method": "m", "params": 3});
        set_params(&mut r, Some(json!({"a": 1})));
        assert_eq!(r["params"], json!({"a": 1}));
        set_params(&mut r, None);
        assert_eq!(r, json!({"id": 1, "method": "m"}));
    }

    #[test]
    fn error_objects() {
        let e = ErrorObject::new(-32602, "bad").with_data(json!({"k": null}));
        assert_eq!(
            e.response(Some(&json!(4))),
            json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -32602, "message": "bad", "data": {"k": null}}})
        );
        assert_eq!(
            ErrorObject::new(1, "m").response(None),
            crate::error_response(None, 1, "m"),
            "the same body as the gate's errors"
        );
    }

    #[test]
    fn notifications_and_params_keep_what_they_do_not_name() {
        let msg = json!({"jsonrpc": "2.0", "method": "notifications/x", "x": 1, "params": {"a": null,
            "_meta": {META_SUBSCRIPTION_ID: 7, "k": []}}});
        let n = Notification::of(&msg).unwrap();
        assert_eq!(n.method, "notifications/x");
        let p = n.params().unwrap();
        assert_eq!(p.extra["a"], Value::Null);
        let meta = NotificationMeta::from_value(p.meta.as_ref().unwrap()).unwrap();
        assert_eq!(meta.subscription_id, Some(json!(7)));
        assert_eq!(meta.into_value(), msg["params"]["_meta"]);
        assert_eq!(p.into_value(), msg["params"]);
        assert_eq!(n.clone().into_value(), msg);
        // Requests, responses and non-objects are not notifications.
        assert!(Notification::of(&json!({"id": 1, "method": "m"})).is_none());
        assert!(Notification::of(&json!({"method": 3})).is_none());
        assert!(Notification::of(&json!([])).is_none());
        let odd = Notification::of(&json!({"method": "m", "params": [1]})).unwrap();
        assert_eq!(odd.params, Some(json!([1])));
        assert!(odd.params().is_none());
        assert!(Params::from_value(&json!({})).unwrap().is_empty());
        assert!(NotificationMeta::from_value(&json!(null)).is_none());
    }

    #[test]
    fn client_capabilities_are_declared_when_present_and_not_null() {
        let c = ClientCapabilities::of(
            &json!({"elicitation": {}, "sampling": null, "roots": false, "x": 1}),
        );
        assert!(c.declares(InputKind::Elicitation) && c.declares(InputKind::Roots));
        assert!(!c.declares(InputKind::Sampling));
        assert!(c.answers_any());
        for none in [
            json!({}),
            json!(null),
            json!([{}, {}, {}]),
            json!({"sampling": null}),
        ] {
            assert!(!ClientCapabilities::of(&none).answers_any(), "{none}");
        }
        for k in InputKind::ALL {
            assert_eq!(InputKind::of_method(k.method()), Some(k));
        }
        assert_eq!(InputKind::of_method("tools/call"), None);
        assert_eq!(InputKind::Sampling.capability(), "sampling");
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

    #[test]
    fn envelopes_are_read_without_judging() {
        let v = json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": "no"}});
        let e = Envelope::of(&v);
        assert!(e.is_response_to(&json!(7)) && !e.is_response_to(&json!("7")));
        assert_eq!(
            (e.error_code(), e.error_message()),
            (Some(-32601), Some("no"))
        );
        let r =
            json!({"id": 1, "method": "roots/list", "params": {"_meta": {"progressToken": "p"}}});
        let e = Envelope::of(&r);
        assert!(e.is_request() && !e.is_notification() && !e.is_response_to(&json!(1)));
        assert_eq!(e.progress_token(), Some(&json!("p")));
        // A method of another type is still a method, but names none.
        let odd = json!({"method": 3});
        let e = Envelope::of(&odd);
        assert!(e.is_notification() && e.method.is_none());
        assert_eq!(Envelope::of(&json!([1])), Envelope::default());
    }

    #[test]
    fn server_capabilities_are_read_member_by_member() {
        let c = ServerCapabilities::of(Some(&json!({"tools": {"listChanged": true},
            "prompts": 1, "resources": {"listChanged": "yes", "subscribe": true}, "logging": {}})));
        assert!(c.list_changed(ListKind::Tools));
        assert!(!c.list_changed(ListKind::Prompts) && !c.list_changed(ListKind::Resources));
        assert!(c.can_subscribe());
        assert!(c.extra.contains_key("logging"));
        assert_eq!(
            ServerCapabilities::of(Some(&json!("x"))),
            ServerCapabilities::default()
        );
        assert!(!ServerCapabilities::of(None).can_subscribe());
    }

    #[test]
    fn subscription_filters() {
        let f = SubscriptionFilter::of(Some(&json!({"toolsListChanged": true,
            "promptsListChanged": "true", "resourceSubscriptions": ["a://1", 2, "a://2"]})));
        assert!(f.list_changed(ListKind::Tools) && !f.list_changed(ListKind::Prompts));
        assert_eq!(f.resource_subscriptions, ["a://1", "a://2"]);
        assert!(f.covers(&json!({"method": "notifications/tools/list_changed"})));
        assert!(!f.covers(&json!({"method": "notifications/prompts/list_changed"})));
        assert!(f.covers(
            &json!({"method": "notifications/resources/updated", "params": {"uri": "a://2"}})
        ));
        assert!(!f.covers(
            &json!({"method": "notifications/resources/updated", "params": {"uri": "a://3"}})
        ));
        let mut built = SubscriptionFilter::default();
        assert!(built.is_empty());
        assert_eq!(built.clone().into_value(), json!({}));
        built.set_list_changed(ListKind::Resources, true);
        built.resource_subscriptions = vec!["a://1".into()];
        assert_eq!(
            built.into_value(),
            json!({"resourcesListChanged": true, "resourceSubscriptions": ["a://1"]})
        );
    }

    #[test]
    fn retry_params_keep_the_request() {
        let msg = json!({"id": 1, "method": "tools/call", "params": {"name": "t",
            "arguments": {"a": null}, "requestState": "s", "inputResponses": {"k": {}}}});
        let mut p = RetryParams::of(&msg).unwrap();
        assert_eq!(p.request_state(), Some("s"));
        assert_eq!(p.input_responses, Some(json!({"k": {}})));
        assert_eq!(p.clone().into_value(), msg["params"]);
        p.request_state = None;
        assert_eq!(
            p.into_value(),
            json!({"name": "t", "arguments": {"a": null}, "inputResponses": {"k": {}}})
        );
        assert!(RetryParams::of(&json!({"params": []})).is_none());
    }
}
