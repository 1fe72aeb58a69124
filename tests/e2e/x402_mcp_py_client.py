"""The x402 project's own MCP client (PyPI `x402`, `x402.mcp.x402MCPSession`, unmodified) paying a
tool through the gateway over the MCP transport:

    python x402_mcp_py_client.py URL KEY ASSET TOOL ARGS_JSON

Opens a Streamable HTTP session with the MCP Python SDK's ClientSession, wraps it in
x402MCPSession with an x402Client whose exact EVM scheme signs with KEY (eth-account), allowing the token ASSET, and
calls
TOOL once: the client reads the gateway's PaymentRequired from the tool result, signs, retries
with `_meta["x402/payment"]` and reads `_meta["x402/payment-response"]`. Then calls it again
without auto-payment to read a fresh offer. Prints one JSON object:
{paymentMade, isError, text, paymentResponse, offerAgain}.
"""

import asyncio
import json
import sys

from eth_account import Account
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from x402 import x402Client
from x402.mcp import x402MCPSession
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner


def dump(v):
    if v is None:
        return None
    if hasattr(v, "model_dump"):
        return v.model_dump(by_alias=True, exclude_none=True)
    return v


async def main(url: str, key: str, asset: str, tool: str, args: dict) -> dict:
    payer = x402Client()
    register_exact_evm_client(payer, EthAccountSigner(Account.from_key(key)))
    # The test token is no default asset of the client's: it is allowed by name, as a user
    # allows a token of their own.
    payer.set_spend_controls(
        {"allowed_assets": [{"network": "eip155:31337", "asset": asset, "max_amount_per_payment": "1000000"}]}
    )
    async with streamable_http_client(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            paying = x402MCPSession(session, payer, auto_payment=True)
            await paying.initialize()
            result = await paying.call_tool(tool, args)
            text = "".join(getattr(c, "text", "") for c in result.content)
            probing = x402MCPSession(session, payer, auto_payment=False)
            again = await probing.call_tool(tool, args)
            offer = again.raw_result.structuredContent if again.raw_result is not None else None
            return {
                "paymentMade": result.payment_made,
                "isError": bool(result.is_error),
                "text": text,
                "paymentResponse": dump(result.payment_response),
                "offerAgain": offer,
            }


if __name__ == "__main__":
    url, key, asset, tool, args = sys.argv[1:6]
    out = asyncio.run(main(url, key, asset, tool, json.loads(args)))
    print(json.dumps(out))
