//! JSON-RPC bodies the gate answers with: errors, challenge errors and in-band results.

use crate::meta::META_PREFIX;
use serde_json::{json, Map, Value};
use turnpike_core::{Challenge, Refusal};

/// A JSON object of `members`, built directly. `json!` passes every expression through
/// `serde_json::to_value`, which copies a `Value` member by serializing it again, a challenge's
/// details in full; answers that carry them are built with this instead.
pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    let mut m = Map::new();
    for (k, v) in members {
        m.insert(k.to_owned(), v);
    }
    Value::Object(m)
}

/// A JSON-RPC error response: `{"jsonrpc":"2.0","id":<id or null>,"error":{"code","message"}}`.
pub fn error_response(id: Option<&Value>, code: i64, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": {"code": code, "message": message},
    })
}

/// A JSON-RPC error listing the ways through: `error.data = {"challenges": [<details>…],
/// "refusals": [{"rail", "reason"}…]}` (HTTP delivery of a challenge).
pub fn challenge_error(
    id: Option<&Value>,
    code: i64,
    message: &str,
    challenges: &[Challenge],
    refusals: &[Refusal],
) -> Value {
    object([
        ("jsonrpc", Value::from("2.0")),
        ("id", id.cloned().unwrap_or(Value::Null)),
        (
            "error",
            object([
                ("code", Value::from(code)),
                ("message", Value::from(message)),
                ("data", ways_through(challenges, refusals)),
            ]),
        ),
    ])
}

/// [`challenge_error`] as JSON bytes, written without building the message as a [`Value`]
/// first: the challenges' details are written where they are, not copied into a new tree.
/// The same document, byte for byte (members in the order a [`Value`] object writes them).
/// Every anonymous call to a priced tool is answered with one of these.
pub fn challenge_error_json(
    id: Option<&Value>,
    code: i64,
    message: &str,
    challenges: &[Challenge],
    refusals: &[Refusal],
) -> Vec<u8> {
    // Members in sorted order, as a `Value` object (a sorted map) writes them.
    #[derive(serde::Serialize)]
    struct Message<'a> {
        error: Error<'a>,
        id: &'a Value,
        jsonrpc: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Error<'a> {
        code: i64,
        data: WaysThrough<'a>,
        message: &'a str,
    }
    #[derive(serde::Serialize)]
    struct WaysThrough<'a> {
        #[serde(serialize_with = "details")]
        challenges: &'a [Challenge],
        // A refusal serialises as `{"rail", "reason"}`, already in that order.
        refusals: &'a [Refusal],
    }
    fn details<S: serde::Serializer>(c: &&[Challenge], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(c.iter().map(|c| &c.details))
    }
    const NULL: &Value = &Value::Null;
    let m = Message {
        error: Error {
            code,
            data: WaysThrough {
                challenges,
                refusals,
            },
            message,
        },
        id: id.unwrap_or(NULL),
        jsonrpc: "2.0",
    };
    // Writing to a `Vec` cannot fail, and every member is plain data.
    serde_json::to_vec(&m).unwrap_or_default()
}

/// An in-band challenge: a successful JSON-RPC response whose `tools/call` result has
/// `isError: true`, one text block an LLM can act on ([`in_band_text`]), and
/// `structuredContent.turnpike` with the same challenges and refusals as an HTTP challenge
/// carries.
pub fn in_band_result(id: Option<&Value>, challenges: &[Challenge], refusals: &[Refusal]) -> Value {
    in_band_result_with(
        id,
        &in_band_text(challenges, refusals),
        challenges,
        refusals,
    )
}

/// [`in_band_result`] with the text given (the gateway composes it from each rail's words).
pub fn in_band_result_with(
    id: Option<&Value>,
    text: &str,
    challenges: &[Challenge],
    refusals: &[Refusal],
) -> Value {
    object([
        ("jsonrpc", Value::from("2.0")),
        ("id", id.cloned().unwrap_or(Value::Null)),
        (
            "result",
            object([
                ("isError", Value::Bool(true)),
                ("content", json!([{"type": "text", "text": text}])),
                (
                    "structuredContent",
                    object([("turnpike", ways_through(challenges, refusals))]),
                ),
            ]),
        ),
    ])
}

/// [`in_band_result_with`] shaped for the request's protocol era: from 2026-07-28 on every
/// result carries `"resultType": "complete"` (the revision makes it required; older revisions
/// do not know the field, so it is left out for them).
pub fn in_band_result_for(
    era: crate::Era,
    id: Option<&Value>,
    text: &str,
    challenges: &[Challenge],
    refusals: &[Refusal],
) -> Value {
    let mut v = in_band_result_with(id, text, challenges, refusals);
    if era == crate::Era::RoutingHeaders {
        if let Some(r) = v.get_mut("result").and_then(Value::as_object_mut) {
            r.insert("resultType".into(), Value::from("complete"));
        }
    }
    v
}

fn ways_through(challenges: &[Challenge], refusals: &[Refusal]) -> Value {
    let refusals = refusals
        .iter()
        .map(|r| {
            object([
                ("rail", Value::from(r.rail.as_str())),
                ("reason", Value::from(r.reason.as_str())),
            ])
        })
        .collect();
    object([
        (
            "challenges",
            Value::Array(challenges.iter().map(|c| c.details.clone()).collect()),
        ),
        ("refusals", Value::Array(refusals)),
    ])
}

/// The text of an in-band challenge: the refusals, what is needed, and for each challenge
/// where its data is and under which `_meta` key to retry (each rail's own words replace this
/// in the gateway).
pub fn in_band_text(challenges: &[Challenge], refusals: &[Refusal]) -> String {
    let mut t = String::new();
    for r in refusals {
        t.push_str(&format!(
            "The {} credential presented was not accepted: {}. ",
            r.rail, r.reason
        ));
    }
    if challenges.is_empty() {
        t.push_str(
            "This call needs a credential, and no way to obtain one can be offered right now. \
             Try again later.",
        );
        return t;
    }
    t.push_str("This call needs a credential before it runs. ");
    for c in challenges {
        let rail = c.rail;
        t.push_str(&format!(
            "{rail}: see structuredContent.turnpike.challenges and retry this same call with the \
             credential in params._meta[\"{META_PREFIX}{rail}\"]. "
        ));
    }
    t.truncate(t.trim_end().len());
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnpike_core::RailId;

    const POW: RailId = RailId::new("pow");

    fn pow_challenge() -> Challenge {
        Challenge {
            rail: POW,
            www_authenticate: "PoW challenge=\"TOK\"".into(),
            details: json!({"rail":"pow","scheme":"PoW","challenge":"TOK","effort":1000,
                "subpuzzles":4,"expected_seconds":0.5}),
        }
    }

    #[test]
    fn error_shapes() {
        assert_eq!(
            error_response(Some(&json!(7)), -32600, "no"),
            json!({"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"no"}})
        );
        assert_eq!(error_response(None, -1, "x")["id"], Value::Null);
        let e = challenge_error(
            Some(&json!("a")),
            -31402,
            "pay",
            &[pow_challenge()],
            &[Refusal::new(POW, "already used")],
        );
        assert_eq!(
            e,
            json!({"jsonrpc":"2.0","id":"a","error":{"code":-31402,"message":"pay","data":{
                "challenges":[pow_challenge().details],
                "refusals":[{"rail":"pow","reason":"already used"}]}}})
        );
    }

    /// The bytes written directly are those of the `Value` built by `challenge_error`: with
    /// and without an id, with no challenge, several, refusals, and text that needs escaping.
    #[test]
    fn challenge_error_json_is_the_same_document() {
        let other = Challenge {
            rail: RailId::new("l402"),
            www_authenticate: "L402 macaroon=\"m\"".into(),
            details: json!({"rail":"l402","invoice":"lnbc1\"\\\u{1}é","amount_msat":1000,
                "nested":{"z":[1,2.5,null,true],"a":"b"}}),
        };
        let ids = [None, Some(json!(7)), Some(json!("a\"b")), Some(Value::Null)];
        let challenge_sets: [Vec<Challenge>; 3] =
            [vec![], vec![pow_challenge()], vec![other, pow_challenge()]];
        let refusal_sets = [
            vec![],
            vec![Refusal::new(POW, "already used")],
            vec![
                Refusal::new(POW, "a \"quoted\" reason\n"),
                Refusal::new(RailId::new("oauth"), "expired"),
            ],
        ];
        for id in &ids {
            for c in &challenge_sets {
                for r in &refusal_sets {
                    let built = challenge_error(id.as_ref(), -31402, "pay \u{7}", c, r);
                    let written = challenge_error_json(id.as_ref(), -31402, "pay \u{7}", c, r);
                    assert_eq!(
                        String::from_utf8(written).unwrap(),
                        serde_json::to_string(&built).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn result_type_from_2026_07_28() {
        let old = in_band_result_for(crate::Era::Session, None, "t", &[pow_challenge()], &[]);
        assert!(old["result"].get("resultType").is_none());
        let new = in_band_result_for(
            crate::Era::RoutingHeaders,
            None,
            "t",
            &[pow_challenge()],
            &[],
        );
        assert_eq!(new["result"]["resultType"], "complete");
        assert_eq!(new["result"]["isError"], true);
    }

    #[test]
    fn in_band_shape() {
        let r = in_band_result(Some(&json!(3)), &[pow_challenge()], &[]);
        assert_eq!(r["id"], 3);
        assert_eq!(r["result"]["isError"], true);
        assert_eq!(r["result"]["content"][0]["type"], "text");
        let text = r["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains("structuredContent") && text.contains("turnpike/pow"),
            "{text}"
        );
        assert_eq!(
            r["result"]["structuredContent"],
            json!({"turnpike":{"challenges":[pow_challenge().details],"refusals":[]}})
        );
        let r = in_band_result(None, &[], &[Refusal::new(POW, "busy")]);
        let text = r["result"]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("busy") && text.contains("later"), "{text}");
    }
}
