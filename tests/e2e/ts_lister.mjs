// A TypeScript-SDK MCP client (@modelcontextprotocol/sdk from .deps) that lists tools as one
// caller, for the per-caller list tests.
//
//   node ts_lister.mjs URL HIDDEN_TOOL [BEARER_TOKEN]
//
// Connects over Streamable HTTP (sending `Authorization: Bearer <token>` on every request when a
// token is given), lists tools, calls HIDDEN_TOOL with no arguments, and prints one JSON object:
// the listed names, and the call's result or the error the SDK raised for it. The SDK is loaded
// from TURNPIKE_DEPS (the repository's .deps folder).
import path from "node:path";
import { pathToFileURL } from "node:url";

const deps = process.env.TURNPIKE_DEPS;
const sdk = (p) =>
  import(pathToFileURL(path.join(deps, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");

const [url, hidden, token] = process.argv.slice(2);
const requestInit = token ? { headers: { Authorization: `Bearer ${token}` } } : undefined;
const client = new Client({ name: "turnpike-e2e-ts-lister", version: "0" });
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit });
await client.connect(transport);
const out = { protocolVersion: transport.protocolVersion ?? null };
out.names = (await client.listTools()).tools.map((t) => t.name).sort();
try {
  out.hidden = { result: await client.callTool({ name: hidden, arguments: {} }) };
} catch (e) {
  out.hidden = { error: String(e?.message ?? e) };
}
await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
