//! Facts about one classified call.

use sha2::{Digest, Sha256};

use crate::Identity;

/// SHA-256 of the canonical JSON of a call's arguments (see `turnpike_mcp::canonical`).
pub type ArgsHash = [u8; 32];

/// What the gate knows about one JSON-RPC message after parsing and classification, before any
/// credential is looked at. Built at the edge (turnpike-mcp); read by the policy and the rails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFacts {
    /// The protected resource, as the operator names it: the mount path (e.g. `/mcp`).
    pub resource: String,
    /// The JSON-RPC method, e.g. `tools/call`.
    pub method: String,
    /// The object the method acts on: the tool name for `tools/call`, the prompt name for
    /// `prompts/get`, the URI for `resources/read`; `None` for other methods.
    pub name: Option<String>,
    /// SHA-256 of the canonical JSON of the arguments (`params.arguments` for tools and prompts,
    /// the empty object when absent).
    pub args_hash: ArgsHash,
    /// Who the caller is before any rail credential is checked, where that is known (e.g. an
    /// identity established by another rail earlier in the same call).
    pub caller: Option<Identity>,
    /// The caller's network address, as the gateway saw it.
    pub peer: Option<std::net::IpAddr>,
    /// Seconds since the Unix epoch at which the call arrived.
    pub now: u64,
}

impl CallFacts {
    /// A digest that names exactly this call's scope: resource, method, name, arguments and the
    /// caller where known. A credential bound to a scope is good for that scope only.
    ///
    /// The input is `"turnpike-scope-v1" 0x00 resource 0x00 method 0x00 name 0x00
    /// hex(args_hash) 0x00 caller`, where a missing name or caller is the empty string and the
    /// caller is [`Identity::scope_key`].
    pub fn scope_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"turnpike-scope-v1\0");
        h.update(self.resource.as_bytes());
        h.update([0]);
        h.update(self.method.as_bytes());
        h.update([0]);
        h.update(self.name.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        // Written on the stack (the digest is taken on every priced call); 32 bytes always fit
        // 64 digits.
        let mut args_hex = [0u8; 64];
        let _ = hex::encode_to_slice(self.args_hash, &mut args_hex);
        h.update(args_hex);
        h.update([0]);
        if let Some(c) = &self.caller {
            h.update(c.scope_key().as_bytes());
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> CallFacts {
        CallFacts {
            resource: "/mcp".into(),
            method: "tools/call".into(),
            name: Some("echo".into()),
            args_hash: [7; 32],
            caller: None,
            peer: None,
            now: 0,
        }
    }

    #[test]
    fn scope_changes_with_every_field() {
        let base = facts().scope_digest();
        let mut f = facts();
        f.name = Some("other".into());
        assert_ne!(f.scope_digest(), base);
        let mut f = facts();
        f.args_hash = [8; 32];
        assert_ne!(f.scope_digest(), base);
        let mut f = facts();
        f.resource = "/other".into();
        assert_ne!(f.scope_digest(), base);
        let mut f = facts();
        f.caller = Some(Identity::OAuth {
            issuer: "i".into(),
            subject: "s".into(),
            client_id: None,
        });
        assert_ne!(f.scope_digest(), base);
        let mut f = facts();
        f.now = 99;
        f.peer = Some("127.0.0.1".parse().unwrap());
        assert_eq!(
            f.scope_digest(),
            base,
            "time and peer are not part of the scope"
        );
    }

    #[test]
    fn the_digest_is_of_the_documented_input() {
        let mut f = facts();
        f.args_hash = std::array::from_fn(|i| (i * 37 + 11) as u8);
        f.caller = Some(Identity::anonymous("203.0.113.7".parse().unwrap()));
        let mut input = b"turnpike-scope-v1\0/mcp\0tools/call\0echo\0".to_vec();
        input.extend_from_slice(hex::encode(f.args_hash).as_bytes());
        input.push(0);
        input.extend_from_slice(f.caller.as_ref().unwrap().scope_key().as_bytes());
        let want: [u8; 32] = Sha256::digest(&input).into();
        assert_eq!(f.scope_digest(), want);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = facts();
        a.resource = "/a".into();
        a.method = "bc".into();
        let mut b = facts();
        b.resource = "/ab".into();
        b.method = "c".into();
        assert_ne!(a.scope_digest(), b.scope_digest());
    }
}
