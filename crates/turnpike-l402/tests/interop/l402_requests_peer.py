"""An auto-paying L402 client (`l402-requests` from PyPI) paying through an LND REST wallet.

  l402_requests_peer.py <wallet url> <wallet macaroon hex> <url> <n>
      GETs <url> n times with one client; prints [{"status": .., "body": ..}, ...] as JSON
"""
import json
import sys

from l402_requests import L402Client
from l402_requests.wallets.lnd import LndWallet

wallet_url, macaroon_hex, url, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = L402Client(wallet=LndWallet(host=wallet_url, macaroon_hex=macaroon_hex))
out = []
for _ in range(n):
    r = client.get(url)
    out.append({"status": r.status_code, "body": r.text})
print(json.dumps(out))
