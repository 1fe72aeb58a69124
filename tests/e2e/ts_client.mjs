// A TypeScript-SDK MCP client (@modelcontextprotocol/sdk from .deps) for the end-to-end tests.
//
//   node ts_client.mjs URL FREE_TOOL FREE_ARGS_JSON PRICED_TOOL PRICED_ARGS_JSON
//
// Connects over Streamable HTTP, lists tools, calls the free tool, calls the priced tool (expects
// an in-band challenge), solves it with `turnpike solve --meta -` (TURNPIKE_BIN), retries with the
// credential in params._meta, replays the same credential, and prints one JSON object with what it
// saw. The SDK is loaded from TURNPIKE_DEPS (the repository's .deps folder).
import { execFileSync } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";

const deps = process.env.TURNPIKE_DEPS;
const turnpike = process.env.TURNPIKE_BIN;
const sdk = (p) =>
  import(pathToFileURL(path.join(deps, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");

const [url, freeTool, freeArgs, pricedTool, pricedArgs] = process.argv.slice(2);
const out = {};

const client = new Client({ name: "turnpike-e2e-ts", version: "0" });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
out.serverVersion = client.getServerVersion();
out.protocolVersion = transport.protocolVersion ?? null;

const tools = await client.listTools();
out.prices = Object.fromEntries(tools.tools.map((t) => [t.name, t._meta?.["turnpike/price"] ?? null]));

out.free = await client.callTool({ name: freeTool, arguments: JSON.parse(freeArgs) });

const args = JSON.parse(pricedArgs);
out.challenge = await client.callTool({ name: pricedTool, arguments: args });
const meta = JSON.parse(
  execFileSync(turnpike, ["solve", "--threads", "1", "--meta", "-"], {
    input: JSON.stringify(out.challenge),
    encoding: "utf8",
  }),
);
out.meta = meta["turnpike/pow"] ? meta : { "turnpike/pow": meta };
out.paid = await client.callTool({ name: pricedTool, arguments: args, _meta: out.meta });
out.replay = await client.callTool({ name: pricedTool, arguments: args, _meta: out.meta });

await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
