// An MCP client paying x402 over the MCP transport (the x402 specification's MCP binding), built
// from the official MCP TypeScript SDK (@modelcontextprotocol/sdk) and the x402 project's client
// (@x402/core's x402Client with @x402/evm's exact scheme), both unmodified, from .deps:
//
//   node x402_mcp_client.mjs URL KEY TOOL ARGS_JSON
//
// Connects over Streamable HTTP and calls TOOL without payment. As the binding's clients do, it
// reads the PaymentRequired from the tool result's structuredContent (x402Version and accepts),
// and from the JSON text of content[0] when that is missing; signs the exact scheme's
// EIP-3009 authorization with KEY (allowing the asset the offer names); calls TOOL again with
// the PaymentPayload in params._meta["x402/payment"]; then presents the same payment once more.
// Prints one JSON object: {challenge, fromText, payment, paid, replay}.
//
// The x402 project's TypeScript MCP client, @x402/mcp, is not in the npm registry this project
// reaches (mppx's x402 MCP part is a server wrapper over it, and `x402-mcp` is not under an open
// licence), so on the TypeScript side the binding's client is these few lines over the SDK's
// callTool, with `_meta` by hand. The project's Python MCP client runs unmodified in
// x402_mcp_py_client.py.
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const deps = process.env.TURNPIKE_DEPS ?? path.resolve(import.meta.dirname, "../../.deps");
const require = createRequire(path.join(deps, "node_modules", "noop.js"));
const sdk = (p) =>
  import(pathToFileURL(path.join(deps, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const { privateKeyToAccount } = await import(require.resolve("viem/accounts"));
const { x402Client } = await import(require.resolve("@x402/core/client"));
const { registerExactEvmScheme } = await import(require.resolve("@x402/evm/exact/client"));
const { toClientEvmSigner } = await import(require.resolve("@x402/evm"));

const [url, key, tool, argsJson] = process.argv.slice(2);
const args = JSON.parse(argsJson);

// The binding's order: structuredContent first, then content[0].text.
function paymentRequiredOf(result) {
  const isOffer = (v) => v && typeof v === "object" && "x402Version" in v && Array.isArray(v.accepts);
  if (!result.isError) return null;
  if (isOffer(result.structuredContent)) return { pr: result.structuredContent, fromText: false };
  try {
    const v = JSON.parse(result.content?.[0]?.text ?? "");
    if (isOffer(v)) return { pr: v, fromText: true };
  } catch {}
  return null;
}

const client = new Client({ name: "turnpike-x402-mcp", version: "0" });
await client.connect(new StreamableHTTPClientTransport(new URL(url)));

const out = {};
out.challenge = await client.callTool({ name: tool, arguments: args });
const found = paymentRequiredOf(out.challenge);
if (!found) throw new Error(`no PaymentRequired in ${JSON.stringify(out.challenge)}`);
const text = JSON.parse(out.challenge.content[0].text);
out.fromText = JSON.stringify(text) === JSON.stringify(found.pr) ? "same" : "different";

const payer = new x402Client();
registerExactEvmScheme(payer, { signer: toClientEvmSigner(privateKeyToAccount(key)) });
payer.setSpendControls({
  allowedAssets: [{ network: "eip155:*", asset: found.pr.accepts[0].asset, maxAmountPerPayment: "1000000" }],
});
out.payment = await payer.createPaymentPayload(found.pr);

out.paid = await client.callTool({ name: tool, arguments: args, _meta: { "x402/payment": out.payment } });
out.replay = await client.callTool({ name: tool, arguments: args, _meta: { "x402/payment": out.payment } });

await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
