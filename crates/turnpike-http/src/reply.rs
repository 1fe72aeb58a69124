//! JSON answers: a JSON body with its content type, and the JSON-RPC error object.

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::Value;

/// A JSON-RPC error response (`id` may be absent for errors before the id is known).
pub fn json_error(
    status: StatusCode,
    id: Option<&Value>,
    code: i64,
    message: &str,
) -> Response<Body> {
    json_response(status, &turnpike_mcp::error_response(id, code, message))
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    json_bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A JSON response whose body is already written.
pub fn json_bytes_response(status: StatusCode, json: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(json));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
