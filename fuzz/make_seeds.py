"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

Run with the project's virtualenv (pymacaroons and bolt11 are test peers already):
    .venv/bin/python fuzz/make_seeds.py
The seeds are committed; libFuzzer's growing corpus goes to fuzz/work/ (not committed).
"""
import base64
import hashlib
import json
import os
import struct
import time

import pymacaroons
from pymacaroons.serializers import BinarySerializer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# --- envelope ---------------------------------------------------------------------------------
msgs = {
    "call": {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
             "params": {"name": "echo", "arguments": {"text": "hi"}}},
    "call_meta": {"jsonrpc": "2.0", "id": "a", "method": "tools/call",
                  "params": {"name": "echo", "arguments": {"n": [1, 2.5, -0.0, 1e300]},
                             "_meta": {"progressToken": 3,
                                       "turnpike/pow": {"challenge": "A" * 148, "solution": "1,2,3,4"},
                                       "turnpike/l402": "AgE:" + "00" * 32}}},
    "list": {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    "init": {"jsonrpc": "2.0", "id": 0, "method": "initialize",
             "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": {"name": "c", "version": "1"}}},
    "notif": {"jsonrpc": "2.0", "method": "notifications/initialized"},
    "response": {"jsonrpc": "2.0", "id": 5, "result": {}},
    "error": {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "x"}},
    "read": {"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "file:///a"}},
    "prompt": {"jsonrpc": "2.0", "id": 4, "method": "prompts/get", "params": {"name": "p", "arguments": {}}},
}
for k, v in msgs.items():
    put("envelope", k, json.dumps(v))
put("envelope", "batch", "[" + json.dumps(msgs["call"]) + "]")
put("envelope", "dupkey", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"free","name":"dear"}}')
put("envelope", "escapes", '{"jsonrpc":"2.0","id":1,"method":"tools\\/call","params":{"name":"\\u0065cho","arguments":{"\\ud83d\\ude00":"\\n"}}}')
put("envelope", "whitespace", ' \t\r\n{ "jsonrpc" : "2.0" ,"id":1e0,"method":"tools/call","params":{"name":"echo"}}\n')
put("envelope", "bignum", '{"jsonrpc":"2.0","id":18446744073709551616,"method":"tools/call","params":{"name":"echo","arguments":{"n":123456789012345678901234567890}}}')

# --- routing headers --------------------------------------------------------------------------
call = json.dumps(msgs["call"])
put("routing_headers", "modern", "MCP-Protocol-Version: 2026-07-28\nMcp-Method: tools/call\nMcp-Name: echo\n\n" + call)
put("routing_headers", "b64name", "MCP-Protocol-Version: 2026-07-28\nMcp-Method: tools/call\nMcp-Name: =?base64?" +
    base64.b64encode("é cho".encode()).decode() + "?=\n\n" +
    json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "é cho"}}))
put("routing_headers", "session", "MCP-Protocol-Version: 2025-06-18\nMcp-Session-Id: abc\n\n" + call)
put("routing_headers", "mismatch", "MCP-Protocol-Version: 2026-07-28\nMcp-Method: tools/list\nMcp-Method: tools/call\n\n" + call)
put("routing_headers", "response", "MCP-Protocol-Version: 2026-07-28\n\n" + json.dumps(msgs["response"]))

# --- auth headers -----------------------------------------------------------------------------
tok = b64url(bytes([1, 1]) + bytes(109))
mac = b"\x02\x01\x08turnpike\x02\x42" + bytes(66) + b"\x00\x00\x06\x20" + bytes(32)
put("auth_headers", "pow", f'Authorization: PoW challenge="{tok}", solution="1,2,3,4"\n\n' + call)
put("auth_headers", "l402", "Authorization: L402 " + base64.b64encode(mac).decode() + ":" + "ab" * 32 + "\n\n" + call)
put("auth_headers", "lsat_params", 'Authorization: LSAT macaroon="' + base64.urlsafe_b64encode(mac).decode() + '", preimage="' + "cd" * 32 + '"\n\n')
put("auth_headers", "macaroon_hdr", "Macaroon: " + mac.hex() + "\nAuthorization: Bearer abc.def.ghi\n\n" + call)
put("auth_headers", "dpop", "Authorization: DPoP eyJhbGciOiJFUzI1NiJ9.e30.c2ln\nDPoP: eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.c2ln\n\n" + call)
put("auth_headers", "www_auth", 'WWW-Authenticate: L402 macaroon="AgE=", invoice="lnbc1"\nWWW-Authenticate: PoW challenge="' + tok +
    '", algorithm="sha256", effort="1000", subpuzzles="4", target="00014f8b588e368f", expires="1767225600", expected_seconds="0.01"\n'
    'WWW-Authenticate: Bearer resource_metadata="https://x/.well-known/oauth-protected-resource", scope="a b", error="invalid_token"\n\n')
put("auth_headers", "meta", "\n" + json.dumps(msgs["call_meta"]))
put("auth_headers", "escaped", 'Authorization: PoW challenge="a\\"b", solution="1" , x=y,,\n\n')

# --- macaroons (pymacaroons, V2 binary) -------------------------------------------------------
ident = struct.pack(">H", 0) + hashlib.sha256(b"preimage").digest() + bytes(range(32))
m = pymacaroons.Macaroon(location="turnpike", identifier=ident, key=b"k" * 32, version=pymacaroons.MACAROON_V2)
put("macaroon", "bare", base64.urlsafe_b64decode(m.serialize(serializer=BinarySerializer()) + "=="))
for c in ["turnpike/resource=/mcp", "turnpike/methods=tools/call", "turnpike/tools=echo,add",
          "turnpike/mode=per_call", "turnpike/expires=1767225600"]:
    m.add_first_party_caveat(c)
put("macaroon", "caveats", base64.urlsafe_b64decode(m.serialize(serializer=BinarySerializer()) + "=="))
m.add_third_party_caveat("https://tp", "tp-key", "tp-id")
put("macaroon", "third_party", base64.urlsafe_b64decode(m.serialize(serializer=BinarySerializer()) + "=="))
put("macaroon", "caveat_lines", "turnpike/tools=a,b\nturnpike/tools=b,c\nturnpike/credit_msat=5\nturnpike/mode=balance\npreimage=" + "00" * 32)
put("macaroon", "base64_text", m.serialize())

# --- PoW tokens -------------------------------------------------------------------------------
now = 1767225600
raw = (bytes([1, 1]) + struct.pack(">IQQQ", 7, now, now + 300, 200000) + bytes([4]) +
       hashlib.sha256(b"scope").digest() + bytes(16) + hashlib.sha256(b"tag").digest())
assert len(raw) == 111
put("pow_token", "raw", raw + struct.pack(">QQQQ", 1, 2, 3, 4))
put("pow_token", "text", b64url(raw))
put("pow_token", "params", f'challenge="{b64url(raw)}", solution="1,2,3,18446744073709551615"')
raw2 = bytes([1, 2]) + raw[2:30] + bytes([64]) + raw[31:]
put("pow_token", "equix", b64url(raw2))

# --- BOLT11 -----------------------------------------------------------------------------------
# The BOLT11 specification's example with a description, and its upper-case form.
spec = ("lnbc1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq9qrsgq357wnc5r2ueh7ck6q93dj32dlqnls087fxdwk8qakdyafkq3yap9us6v52vjjsrvywa6rt52cm9r9zqt8r2t7mlcwspyetp5h2tztugp9lfyql")
put("bolt11", "spec", spec)
put("bolt11", "upper", spec.upper())
put("bolt11", "short", "lnbcrt210n1qqqqqqqqqq")

# --- DPoP / JOSE ------------------------------------------------------------------------------
hdr = b64url(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256",
              "x": b64url(bytes(32)), "y": b64url(bytes(32))}}).encode())
put("dpop_jose", "proof", b"\x00" + f"{hdr}.{b64url(b'{}')}.{b64url(bytes(64))}".encode())
put("dpop_jose", "jwk_ec", b"\x01" + json.dumps({"kty": "EC", "crv": "P-256", "x": b64url(bytes(32)), "y": b64url(bytes(32))}).encode())
put("dpop_jose", "jwk_okp", b"\x01" + json.dumps({"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(32))}).encode())
put("dpop_jose", "jwk_rsa", b"\x01" + json.dumps({"kty": "RSA", "n": b64url(b"\xc1" + bytes(255)), "e": "AQAB"}).encode())
ath = b64url(hashlib.sha256(b"access-token").digest())
put("dpop_jose", "claims", b"\x02" + json.dumps({"jti": "j1", "htm": "POST", "htu": "https://mcp.example.com/mcp",
                                                 "iat": now, "ath": ath}).encode())
put("dpop_jose", "claims_nonce", b"\x06" + json.dumps({"jti": "j2", "htm": "post", "htu": "https://MCP.example.com:443/mcp?q#f",
                                                       "iat": now - 10.5, "ath": ath, "nonce": "AAAA",
                                                       "content_digest": "sha-256=:AAAA:"}).encode())

# --- upstream SSE -----------------------------------------------------------------------------
tl = json.dumps({"jsonrpc": "2.0", "id": 2, "result": {"tools": [{"name": "echo", "inputSchema": {}}, {"name": ""}]}})
put("upstream_sse", "tools_list", b"\x07" + f"event: message\nid: 1\ndata: {tl}\n\n".encode())
put("upstream_sse", "crlf", b"\x01" + b"\xef\xbb\xbf: comment\r\nretry: 10\r\ndata: a\r\ndata: b\r\n\r\ndata: tail")
put("upstream_sse", "json", b"\x40" + tl.encode())

# --- config -----------------------------------------------------------------------------------
put("config", "minimal", '[upstream]\nurl = "http://127.0.0.1:3001/mcp"\n')
put("config", "rails", '''[server]
listen = "127.0.0.1:8402"
path = "/mcp"
challenge_mode = "auto"
max_body_bytes = 1048576

[upstream]
url = "http://127.0.0.1:3001/mcp"

[pow]
expiry_secs = 300
subpuzzles = 4

[pow.load]
calm_rps = 100

[tools.echo]
pow = 200000
l402 = { msat = 21000, mode = "per_call" }

[tools.add]
l402 = { msat = 1000, mode = "balance", bundle = 100000 }

[tools.ping]
free = true

[tools.default]
pow = 1000

[l402]
confirm_settlement = "never"

[l402.backend]
kind = "dev"
network = "regtest"

[limits.default]
burst = 50
rate = "20/s"
concurrency = 8

[limits.loop_brake]
enabled = true
''')
put("config", "oauth", '''[server]
public_url = "https://mcp.example.com/mcp"
allowed_hosts = ["mcp.example.com"]

[upstream]
command = ["python3", "server.py"]

[tools.deploy]
oauth = { scopes = ["deploy:write"] }

[oauth]
issuer = "https://auth.example.com/realms/mcp"
scopes_supported = ["mcp:tools"]
forward_identity = "signed"
identity_secret = "''' + "ab" * 32 + '''"

[oauth.implied_scopes]
"mcp:admin" = ["mcp:tools"]

[store]
backend = "redis"
url = "redis://127.0.0.1:6379"
''')
put("config", "broken", '[server\nlisten = 5\n[tools.x]\npow = -1\nl402 = { msat = "a" }\n')
print("seeds written under", ROOT)
