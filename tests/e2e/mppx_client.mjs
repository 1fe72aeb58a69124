// The `mppx` client (the Machine Payments Protocol's TypeScript SDK) paying a turnpike gateway
// over HTTP with the Lightning `charge` method. mppx ships no Lightning method, so the method is
// defined here through mppx's public method API (Method.from / Method.toClient): its credential
// is made by paying the challenge's BOLT11 invoice with the dev wallet (an LND REST look-alike)
// and putting the preimage in the payload.
//
// Usage: node mppx_client.mjs <gateway url> <dev-wallet.json> <tool> <arguments JSON>
// Prints one JSON line: {status, receipt, result, replay: {status, refusals}}.
//
// mppx is found in node_modules under $TURNPIKE_DEPS (default: the repository's .deps).

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const deps = process.env.TURNPIKE_DEPS ?? path.resolve(import.meta.dirname, '../../.deps')
const require = createRequire(path.join(deps, 'node_modules', 'noop.js'))
const { Credential, Method, Receipt, z } = await import(require.resolve('mppx'))
const { Mppx } = await import(require.resolve('mppx/client'))

const [url, walletFile, tool, argsJson] = process.argv.slice(2)
const wallet = JSON.parse(readFileSync(walletFile, 'utf8'))

// The Lightning charge method (draft-lightning-charge-00): request and payload schemas, kept
// loose so that the request is echoed exactly as the server wrote it.
const lightningCharge = Method.from({
  name: 'lightning',
  intent: 'charge',
  schema: {
    credential: { payload: z.object({ preimage: z.string() }) },
    request: z.looseObject({
      amount: z.string(),
      currency: z.string(),
      methodDetails: z.looseObject({ invoice: z.string(), paymentHash: z.string() }),
    }),
  },
})

let paidAmount = 0
const lightning = Method.toClient(lightningCharge, {
  async createCredential({ challenge }) {
    const { invoice } = challenge.request.methodDetails
    paidAmount += Number(challenge.request.amount)
    const r = await fetch(`${wallet.url}/v1/channels/transactions`, {
      method: 'POST',
      headers: { 'grpc-metadata-macaroon': wallet.macaroon_hex, 'content-type': 'application/json' },
      body: JSON.stringify({ payment_request: invoice }),
    })
    const paid = await r.json()
    if (paid.payment_error) throw new Error(`payment failed: ${paid.payment_error}`)
    const preimage = Buffer.from(paid.payment_preimage, 'base64').toString('hex')
    return Credential.serialize({ challenge, payload: { preimage } })
  },
})

const mppx = Mppx.create({ methods: [lightning], polyfill: false })
const body = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/call',
  params: { name: tool, arguments: JSON.parse(argsJson) },
})
const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }

let sent
mppx.onCredentialCreated(({ credential }) => {
  sent = credential
})
const resp = await mppx.fetch(url, { method: 'POST', headers, body })
const receipt = Receipt.fromResponse(resp)
const result = await resp.json()

// The same credential again, by hand: refused with a fresh challenge.
const replay = await fetch(url, {
  method: 'POST',
  headers: { ...headers, authorization: sent },
  body,
})
const replayBody = await replay.json()

console.log(
  JSON.stringify({
    status: resp.status,
    paidAmount,
    receipt,
    result,
    replay: {
      status: replay.status,
      fresh: (replay.headers.get('www-authenticate') ?? '').includes('Payment '),
      refusals: replayBody?.error?.data?.refusals ?? [],
    },
  }),
)
