// The `mppx` client (the Machine Payments Protocol's TypeScript SDK), unmodified, paying a
// turnpike gateway with MPP's `evm` charge method: an EIP-3009 authorization signed with viem
// (mppx's own `evm` client method, `mppx/client`), the token's EIP-712 domain given as the
// method's `authorization` setting (the challenge's request names the token, not its domain).
//
//   http <url> <key> <name> <version> <tool> <args>   calls <tool> through `Mppx.create(…).fetch`;
//                                                     then presents the same credential again
//                                                     by hand; prints {status, receipt, result,
//                                                     credential, replay: {status, refusals}}
//   mcp <url> <key> <name> <version> <tool> <args>    the MCP TypeScript SDK's client over
//                                                     Streamable HTTP, wrapped by mppx's
//                                                     `McpClient.wrap`; prints {result, receipt}
//   sign <key> <name> <version>                       reads a `WWW-Authenticate: Payment` value
//                                                     (method="evm") on stdin; prints the
//                                                     `Authorization` value mppx makes for it
//
// mppx, viem and the MCP SDK are found in node_modules under $TURNPIKE_DEPS (default: the
// repository's .deps).

import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const deps = process.env.TURNPIKE_DEPS ?? path.resolve(import.meta.dirname, '../../.deps')
const require = createRequire(path.join(deps, 'node_modules', 'noop.js'))
const { Challenge, Receipt } = await import(require.resolve('mppx'))
const { Mppx, evm } = await import(require.resolve('mppx/client'))
const { privateKeyToAccount } = await import(require.resolve('viem/accounts'))

const [command, ...args] = process.argv.slice(2)

function methods(key, name, version) {
  return evm({ account: privateKeyToAccount(key), authorization: { name, version } })
}

const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }

if (command === 'http') {
  const [url, key, name, version, tool, argsJson] = args
  const mppx = Mppx.create({ methods: methods(key, name, version), polyfill: false })
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: tool, arguments: JSON.parse(argsJson) },
  })
  let sent
  mppx.onCredentialCreated(({ credential }) => {
    sent = credential
  })
  const resp = await mppx.fetch(url, { method: 'POST', headers, body })
  const receipt = resp.status === 200 ? Receipt.fromResponse(resp) : null
  const result = await resp.json()
  // The same credential again, by hand: refused with a fresh challenge.
  const replay = await fetch(url, { method: 'POST', headers: { ...headers, authorization: sent }, body })
  const replayBody = await replay.json()
  console.log(
    JSON.stringify({
      status: resp.status,
      receipt,
      result,
      credential: sent,
      replay: { status: replay.status, refusals: replayBody?.error?.data?.refusals ?? [] },
    }),
  )
} else if (command === 'mcp') {
  const [url, key, name, version, tool, argsJson] = args
  const sdk = (p) => import(pathToFileURL(path.join(deps, 'node_modules/@modelcontextprotocol/sdk/dist/esm', p)).href)
  const { Client } = await sdk('client/index.js')
  const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js')
  const { McpClient } = await import(require.resolve('mppx/mcp/client'))
  const client = new Client({ name: 'turnpike-e2e-mppx-evm', version: '0' })
  await client.connect(new StreamableHTTPClientTransport(new URL(url)))
  McpClient.wrap(client, { methods: methods(key, name, version) })
  const result = await client.callTool({ name: tool, arguments: JSON.parse(argsJson) })
  await client.close()
  console.log(JSON.stringify({ result, receipt: result.receipt ?? null }))
} else if (command === 'sign') {
  const [key, name, version] = args
  let input = ''
  for await (const chunk of process.stdin) input += chunk
  const [method] = methods(key, name, version)
  const challenge = Challenge.deserialize(input.trim(), { methods: [method] })
  console.log(await method.createCredential({ challenge }))
} else {
  console.error(`unknown command ${command}`)
  process.exit(2)
}
