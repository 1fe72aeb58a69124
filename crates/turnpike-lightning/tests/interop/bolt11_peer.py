"""The independent BOLT11 decoder (the `bolt11` package from PyPI) for turnpike's dev invoices.

  bolt11_peer.py <invoice>...   prints one JSON object per invoice, in a JSON list
"""
import json
import sys

import bolt11


def read(s):
    inv = bolt11.decode(s)
    return {
        "currency": inv.currency,
        "is_regtest": inv.is_regtest(),
        "is_signet": inv.is_signet(),
        "amount_msat": inv.amount_msat,
        "date": inv.date,
        "expiry": inv.expiry,
        "description": inv.description,
        "payment_hash": inv.payment_hash,
        "payment_secret": inv.payment_secret,
        "min_final_cltv_expiry": inv.min_final_cltv_expiry,
        "payee": inv.payee,
        "features": sorted(f.name + ":" + s.name for f, s in inv.features.feature_list.items()),
    }


print(json.dumps([read(s) for s in sys.argv[1:]]))
