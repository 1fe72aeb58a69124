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
}

impl Identity {
    /// The anonymous identity of a network peer: IPv4 addresses as they are, IPv6 addresses
    /// reduced to their /64 prefix (one customer usually holds a whole /64).
    pub fn anonymous(peer: IpAddr) -> Self {
        let addr_prefix = match peer {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    v4.to_string()
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
        }
    }

    /// The kind of identity, as a short label safe for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Anonymous { .. } => "anonymous",
            Identity::OAuth { .. } => "oauth",
            Identity::L402 { .. } => "l402",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
