"""The pymacaroons side of turnpike's macaroon interoperability test.

  verify <base64> <root key hex> <caveat>...   deserialize, verify with exactly these caveats
                                               satisfied; print what pymacaroons read (JSON)
  mint <root key hex> <identifier hex> <location> <caveat>...
                                               mint a V2 macaroon; print it (JSON)
"""
import binascii
import json
import sys

from pymacaroons import Macaroon, Verifier, MACAROON_V2
from pymacaroons.serializers.binary_serializer import BinarySerializer


def text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v


def verify(b64, root_hex, caveats):
    m = Macaroon.deserialize(b64)
    v = Verifier()
    for c in caveats:
        v.satisfy_exact(c)
    try:
        ok = v.verify(m, binascii.unhexlify(root_hex))
    except Exception as e:  # pymacaroons raises on any failure
        ok = False
        err = type(e).__name__
    else:
        err = None
    raw = BinarySerializer().serialize_raw(m)
    print(json.dumps({
        "verified": bool(ok),
        "error": err,
        "version": m.version,
        "location": text(m.location),
        "identifier": binascii.hexlify(m.identifier_bytes).decode(),
        "caveats": [text(c.caveat_id) for c in m.caveats],
        "signature": text(m.signature),
        "reserialized": binascii.hexlify(raw).decode(),
    }))


def mint(root_hex, ident_hex, location, caveats):
    m = Macaroon(location=location, identifier=binascii.unhexlify(ident_hex),
                 key=binascii.unhexlify(root_hex), version=MACAROON_V2)
    for c in caveats:
        m.add_first_party_caveat(c)
    raw = BinarySerializer().serialize_raw(m)
    print(json.dumps({
        "base64url": m.serialize(),
        "raw": binascii.hexlify(raw).decode(),
        "signature": text(m.signature),
    }))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "verify":
        verify(args[0], args[1], args[2:])
    elif cmd == "mint":
        mint(args[0], args[1], args[2], args[3:])
    else:
        sys.exit("unknown command " + cmd)
