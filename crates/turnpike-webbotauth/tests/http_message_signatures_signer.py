"""Signs requests with the PyPI http-message-signatures package for
tests/http_message_signatures_py.rs.

Reads {"keyid": ..., "cases": [{name, method, url, headers, components, created, expires,
nonce, label}]} on stdin (times in seconds; the key is RFC 9421's test-key-ed25519);
prints {name: headers after signing}.
"""

import base64
import datetime
import json
import sys
import types

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

SEED = base64.urlsafe_b64decode("n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU=")


def when(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def main():
    job = json.load(sys.stdin)
    keyid = job["keyid"]
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(
            public_keys={}, private_keys={keyid: Ed25519PrivateKey.from_private_bytes(SEED)}
        ),
    )
    out = {}
    for case in job["cases"]:
        message = types.SimpleNamespace(
            method=case["method"], url=case["url"], headers=dict(case["headers"])
        )
        signer.sign(
            message,
            key_id=keyid,
            created=when(case["created"]),
            expires=when(case["expires"]),
            nonce=case.get("nonce"),
            label=case["label"],
            tag="web-bot-auth",
            covered_component_ids=case["components"],
        )
        out[case["name"]] = message.headers
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
