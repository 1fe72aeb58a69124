// A TypeScript-SDK MCP client (@modelcontextprotocol/sdk from .deps, 2025 revisions) that
// answers elicitation and sampling requests, for the input_required bridging tests.
//
//   node ts_elicit.mjs URL CALLS_JSON
//
// CALLS_JSON is a list of {"tool", "arguments", "refuse"?}: each is called in turn; with
// "refuse" the client's elicitation handler throws for that call. Prints one JSON object:
// {"results": [<CallToolResult or {"error": message, "code": code}>...], "asked": [<requests seen>]}.
import path from "node:path";
import { pathToFileURL } from "node:url";

const deps = process.env.TURNPIKE_DEPS;
const sdk = (p) =>
  import(pathToFileURL(path.join(deps, "node_modules/@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const { ElicitRequestSchema, CreateMessageRequestSchema } = await sdk("types.js");

const [url, callsJson] = process.argv.slice(2);
const calls = JSON.parse(callsJson);
const out = { results: [], asked: [] };
let refuse = false;

const client = new Client(
  { name: "turnpike-e2e-ts-elicit", version: "0" },
  { capabilities: { elicitation: {}, sampling: {} } },
);
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  out.asked.push({ method: req.method, message: req.params.message });
  if (refuse) throw new Error("the user closed the dialog");
  return { action: "accept", content: { ok: true, note: `ts answer ${out.asked.length}` } };
});
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  out.asked.push({ method: req.method, text: req.params.messages[0].content.text });
  return {
    role: "assistant",
    model: "ts-model",
    content: { type: "text", text: `sampled ${out.asked.length}` },
  };
});
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
out.protocolVersion = transport.protocolVersion ?? null;

for (const c of calls) {
  refuse = Boolean(c.refuse);
  try {
    out.results.push(await client.callTool({ name: c.tool, arguments: c.arguments }));
  } catch (e) {
    out.results.push({ error: String(e.message ?? e), code: e.code ?? null });
  }
}
await client.close();
process.stdout.write(JSON.stringify(out) + "\n");
