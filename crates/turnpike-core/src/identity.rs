//! Who a caller is.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The identity a call is attributed to, once a rail has verified it (or, for anonymous
/// callers, the network address it came from). Later rate limits and budgets key on
/// [`Identity::scope_key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identity {
    /// No account and no wallet: known only by the address prefix it came from
    /// (the /64 for IPv6, the whole address for IPv4).
    Anonymous {
        /// The address prefix, in text form.
        addr_prefix: String,
    },
    /// An OAuth access token's issuer, subject and client.
    OAuth {
        /// The token's `iss`.
        issuer: String,
        /// The token's `sub`.
        subject: String,
        /// The token's `client_id` (or `azp`), when it names one.
        client_id: Option<String>,
    },
    /// An L402 token, by its token id (hex).
    L402 {
        /// The token id, 64 hex digits.
        token_id: String,
    },
    /// An agent whose request signature verified (Web Bot Auth): its key directory and the key
    /// it signed with.
    Agent {
        /// The key directory's URL, as the request's `Signature-Agent` named it.
        directory: String,
        /// The key's id (its RFC 7638 JWK thumbprint).
        key_id: String,
    },
    /// A caller another rail verified, named by that rail: for a rail whose callers are none of
    /// the kinds above, so that it needs no variant of its own.
    Rail {
        /// The rail's name ([`crate::RailId::as_str`]: lower case, no `:`).
        rail: String,
        /// The caller's id, as the rail names it (no secret: it keys limits and shows in the
        /// dashboard).
        id: String,
    },
}

/// `v4` in dotted decimal, as its `Display` writes it, without the formatter (once per call).
fn dotted(v4: std::net::Ipv4Addr) -> String {
    let mut out = String::with_capacity(15);
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if o >= 100 {
            out.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            out.push(char::from(b'0' + o / 10 % 10));
        }
        out.push(char::from(b'0' + o % 10));
    }
    out
}

impl Identity {
    /// The anonymous identity of a network peer: IPv4 addresses as they are, IPv6 addresses
    /// reduced to their /64 prefix (one customer usually holds a whole /64).
    pub fn anonymous(peer: IpAddr) -> Self {
        let addr_prefix = match peer {
            IpAddr::V4(v4) => dotted(v4),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    dotted(v4)
                } else {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            }
        };
        Identity::Anonymous { addr_prefix }
    }

    /// A stable string naming this identity, used as a key for limits and in scope digests.
    /// Never contains a secret.
    pub fn scope_key(&self) -> String {
        match self {
            Identity::Anonymous { addr_prefix } => format!("anon:{addr_prefix}"),
            Identity::OAuth {
                issuer,
                subject,
                client_id,
            } => format!(
                "oauth:{}:{}:{}",
                issuer.len(),
                issuer,
                match client_id {
                    Some(c) => format!("{}:{subject}:{c}", subject.len()),
                    None => format!("{}:{subject}:", subject.len()),
                }
            ),
            Identity::L402 { token_id } => format!("l402:{token_id}"),
            Identity::Agent { directory, key_id } => {
                format!("agent:{}:{directory}:{key_id}", directory.len())
            }
            Identity::Rail { rail, id } => format!("{rail}:{id}"),
        }
    }

    /// The kind of identity, as a short label safe for metrics and logs: `anonymous`, or the
    /// name of the rail that verified it.
    pub fn kind(&self) -> &str {
        match self {
            Identity::Anonymous { .. } => "anonymous",
            Identity::OAuth { .. } => "oauth",
            Identity::L402 { .. } => "l402",
            Identity::Agent { .. } => "agent",
            Identity::Rail { rail, .. } => rail,
        }
    }

    /// A verified caller's label for the operator's eyes (the dashboard's callers), bounded in
    /// length and holding no secret: the OAuth subject (its first 64 characters), the L402
    /// token id's first 16 hex digits, an agent's key id (its first 64 characters), another
    /// rail's id (its first 64 characters). `None` for
    /// an anonymous caller, whose address is never shown (the dashboard shows a keyed hash).
    pub fn label(&self) -> Option<String> {
        match self {
            Identity::Anonymous { .. } => None,
            Identity::OAuth { subject, .. } => Some(subject.chars().take(64).collect()),
            Identity::L402 { token_id } => Some(token_id.chars().take(16).collect()),
            Identity::Agent { key_id, .. } => Some(key_id.chars().take(64).collect()),
            Identity::Rail { id, .. } => Some(id.chars().take(64).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_is_what_display_writes() {
        for o in 0..=255u8 {
            for v4 in [
                std::net::Ipv4Addr::new(o, 0, 7, 255),
                std::net::Ipv4Addr::new(9, o, 10, 99),
                std::net::Ipv4Addr::new(100, 1, o, 0),
                std::net::Ipv4Addr::new(255, 254, 12, o),
            ] {
                assert_eq!(dotted(v4), v4.to_string());
            }
        }
    }

    #[test]
    fn ipv6_reduces_to_64() {
        let a = Identity::anonymous("2001:db8:1:2:3:4:5:6".parse().unwrap());
        let b = Identity::anonymous("2001:db8:1:2:ffff::1".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.scope_key(), "anon:2001:db8:1:2::/64");
        let c = Identity::anonymous("::ffff:10.0.0.1".parse().unwrap());
        assert_eq!(c.scope_key(), "anon:10.0.0.1");
    }

    #[test]
    fn oauth_keys_are_unambiguous() {
        let a = Identity::OAuth {
            issuer: "a:b".into(),
            subject: "c".into(),
            client_id: None,
        };
        let b = Identity::OAuth {
            issuer: "a".into(),
            subject: "b:c".into(),
            client_id: None,
        };
        assert_ne!(a.scope_key(), b.scope_key());
    }

    /// The scope keys limits and digests are keyed on: those of the three built-in kinds stay
    /// as they have always been, and a rail's caller is `<rail>:<id>`.
    #[test]
    fn scope_keys_are_stable() {
        let oauth = Identity::OAuth {
            issuer: "https://as.example".into(),
            subject: "alice".into(),
            client_id: Some("agent".into()),
        };
        assert_eq!(
            oauth.scope_key(),
            "oauth:18:https://as.example:5:alice:agent"
        );
        let l402 = Identity::L402 {
            token_id: "ab".repeat(32),
        };
        assert_eq!(l402.scope_key(), format!("l402:{}", "ab".repeat(32)));
        let rail = Identity::Rail {
            rail: "x402".into(),
            id: "0xabc".into(),
        };
        assert_eq!(rail.scope_key(), "x402:0xabc");
        assert_eq!(rail.kind(), "x402");
        assert_eq!(rail.label().as_deref(), Some("0xabc"));
        let long = Identity::Rail {
            rail: "mpp".into(),
            id: "y".repeat(100),
        };
        assert_eq!(long.label().map(|l| l.len()), Some(64));
        assert_eq!(long.scope_key(), format!("mpp:{}", "y".repeat(100)));
        assert_eq!(
            Identity::anonymous("10.0.0.1".parse().unwrap()).label(),
            None
        );
    }

    /// An agent's scope key names its directory's length, so that no directory and key id can
    /// pass for another pair.
    #[test]
    fn agent_keys_are_unambiguous() {
        let a = Identity::Agent {
            directory: "https://a.example/x:y".into(),
            key_id: "k".into(),
        };
        let b = Identity::Agent {
            directory: "https://a.example/x".into(),
            key_id: "y:k".into(),
        };
        assert_ne!(a.scope_key(), b.scope_key());
        assert_eq!(a.scope_key(), "agent:21:https://a.example/x:y:k");
        assert_eq!(a.kind(), "agent");
        assert_eq!(a.label().as_deref(), Some("k"));
        let long = Identity::Agent {
            directory: "d".into(),
            key_id: "z".repeat(100),
        };
        assert_eq!(long.label().map(|l| l.len()), Some(64));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"kind": "agent", "directory": "https://a.example/x:y", "key_id": "k"})
        );
    }

    #[test]
    fn serde_round_trip() {
        let ids = [
            Identity::anonymous("192.0.2.1".parse().unwrap()),
            Identity::OAuth {
                issuer: "https://as.example".into(),
                subject: "alice".into(),
                client_id: None,
            },
            Identity::L402 {
                token_id: "cd".repeat(32),
            },
            Identity::Rail {
                rail: "x402".into(),
                id: "0xabc".into(),
            },
        ];
        for id in ids {
            let text = serde_json::to_string(&id).unwrap();
            let back: Identity = serde_json::from_str(&text).unwrap();
            assert_eq!(back, id);
            assert_eq!(back.scope_key(), id.scope_key());
        }
        let rail = Identity::Rail {
            rail: "x402".into(),
            id: "0xabc".into(),
        };
        assert_eq!(
            serde_json::to_value(&rail).unwrap(),
            serde_json::json!({"kind": "rail", "rail": "x402", "id": "0xabc"})
        );
        let l402: Identity =
            serde_json::from_value(serde_json::json!({"kind": "l402", "token_id": "00"})).unwrap();
        assert_eq!(l402.scope_key(), "l402:00");
    }
}
