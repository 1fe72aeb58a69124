// The x402 rail's peers on a local chain (anvil): the token, and the x402 client.
//
//   setup <rpc url> <payer address>...       compiles tests/e2e/x402_TestUSD.sol with solc
//                                            (standard JSON), deploys it from the node's first
//                                            unlocked account, mints 1 TUSD (1000000) to each
//                                            payer; prints {"asset", "chainId"}
//   drain <rpc url> <asset> <from> <to>      moves all of <from>'s tokens to <to> (the node
//                                            impersonates <from>); prints {"moved"}
//   address <key>                            prints {"address"} of a secp256k1 key
//   balance <rpc url> <asset> <who>          prints {"balance"} (a decimal string)
//   pay <url> <key> <asset> <tool> <args>    calls <tool> with the x402 client (@x402/fetch
//                                            wrapping fetch, @x402/evm's exact scheme, key
//                                            <key>), allowing <asset>; prints {status, body,
//                                            paymentResponse}
//   sign <key>                               reads a PaymentRequired JSON on stdin, makes the
//                                            client's PaymentPayload for it with @x402/core's
//                                            client (allowing the asset it names) and prints
//                                            the PAYMENT-SIGNATURE value
//   facilitator <rpc url> <key>              serves an x402 facilitator (@x402/core's
//                                            x402Facilitator with @x402/evm's exact scheme,
//                                            settling with <key>) on 127.0.0.1, port 0: prints
//                                            {"port"} once it listens, then POST /settle
//
// The packages are found in node_modules under $TURNPIKE_DEPS (default: the repository's .deps).

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const deps = process.env.TURNPIKE_DEPS ?? path.resolve(import.meta.dirname, '../../.deps')
const require = createRequire(path.join(deps, 'node_modules', 'noop.js'))
const viem = await import(require.resolve('viem'))
const { privateKeyToAccount } = await import(require.resolve('viem/accounts'))

const [command, ...args] = process.argv.slice(2)

async function rpc(url, method, params) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  })
  const v = await r.json()
  if (v.error) throw new Error(`${method}: ${JSON.stringify(v.error)}`)
  return v.result
}

async function mined(url, hash) {
  // anvil mines each transaction as it arrives; its receipt is asked for until it is there.
  const deadline = Date.now() + 30000
  let receipt = null
  while (!receipt && Date.now() < deadline) {
    receipt = await rpc(url, 'eth_getTransactionReceipt', [hash])
    if (!receipt) await new Promise((r) => setTimeout(r, 20))
  }
  if (!receipt || receipt.status !== '0x1') throw new Error(`transaction ${hash} failed: ${JSON.stringify(receipt)}`)
  return receipt
}

const tokenAbi = viem.parseAbi([
  'function mint(address to, uint256 value)',
  'function transfer(address to, uint256 value) returns (bool)',
  'function balanceOf(address who) view returns (uint256)',
])

async function send(url, from, to, data) {
  const hash = await rpc(url, 'eth_sendTransaction', [{ from, to, data }])
  return mined(url, hash)
}

async function balance(url, asset, who) {
  const data = viem.encodeFunctionData({ abi: tokenAbi, functionName: 'balanceOf', args: [who] })
  const out = await rpc(url, 'eth_call', [{ to: asset, data }, 'latest'])
  return BigInt(out)
}

function allowing(client, network, asset) {
  client.setSpendControls({ allowedAssets: [{ network, asset, maxAmountPerPayment: '1000000' }] })
  return client
}

async function x402Client(key, asset) {
  const { x402Client } = await import(require.resolve('@x402/core/client'))
  const { registerExactEvmScheme } = await import(require.resolve('@x402/evm/exact/client'))
  const { toClientEvmSigner } = await import(require.resolve('@x402/evm'))
  const client = new x402Client()
  registerExactEvmScheme(client, { signer: toClientEvmSigner(privateKeyToAccount(key)) })
  return allowing(client, 'eip155:*', asset)
}

if (command === 'setup') {
  const [url, ...payers] = args
  const solc = require('solc')
  const source = readFileSync(path.join(import.meta.dirname, 'x402_TestUSD.sol'), 'utf8')
  const input = {
    language: 'Solidity',
    sources: { 'TestUSD.sol': { content: source } },
    settings: { optimizer: { enabled: true, runs: 200 }, outputSelection: { '*': { '*': ['evm.bytecode.object'] } } },
  }
  const output = JSON.parse(solc.compile(JSON.stringify(input)))
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error')
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join('\n'))
  const bytecode = output.contracts['TestUSD.sol'].TestUSD.evm.bytecode.object
  const [deployer] = await rpc(url, 'eth_accounts', [])
  const hash = await rpc(url, 'eth_sendTransaction', [{ from: deployer, data: `0x${bytecode}` }])
  const { contractAddress } = await mined(url, hash)
  for (const p of payers) {
    const data = viem.encodeFunctionData({ abi: tokenAbi, functionName: 'mint', args: [p, 1000000n] })
    await send(url, deployer, contractAddress, data)
  }
  const chainId = Number(BigInt(await rpc(url, 'eth_chainId', [])))
  console.log(JSON.stringify({ asset: viem.getAddress(contractAddress), chainId }))
} else if (command === 'drain') {
  const [url, asset, from, to] = args
  const have = await balance(url, asset, from)
  await rpc(url, 'anvil_setBalance', [from, '0xde0b6b3a7640000'])
  await rpc(url, 'anvil_impersonateAccount', [from])
  const data = viem.encodeFunctionData({ abi: tokenAbi, functionName: 'transfer', args: [to, have] })
  await send(url, from, asset, data)
  await rpc(url, 'anvil_stopImpersonatingAccount', [from])
  console.log(JSON.stringify({ moved: have.toString() }))
} else if (command === 'address') {
  const [key] = args
  console.log(JSON.stringify({ address: privateKeyToAccount(key).address }))
} else if (command === 'balance') {
  const [url, asset, who] = args
  console.log(JSON.stringify({ balance: (await balance(url, asset, who)).toString() }))
} else if (command === 'pay') {
  const [url, key, asset, tool, argsJson] = args
  const { wrapFetchWithPayment, decodePaymentResponseHeader } = await import(require.resolve('@x402/fetch'))
  const client = await x402Client(key, asset)
  const paying = wrapFetchWithPayment(fetch, client)
  const r = await paying(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool, arguments: JSON.parse(argsJson) } }),
  })
  const header = r.headers.get('payment-response')
  const text = await r.text()
  let body
  try { body = JSON.parse(text) } catch { body = text }
  console.log(JSON.stringify({ status: r.status, body, paymentResponse: header ? decodePaymentResponseHeader(header) : null }))
} else if (command === 'sign') {
  const [key] = args
  const { x402HTTPClient } = await import(require.resolve('@x402/core/client'))
  const paymentRequired = JSON.parse(readFileSync(0, 'utf8'))
  const client = await x402Client(key, paymentRequired.accepts[0].asset)
  const payload = await client.createPaymentPayload(paymentRequired)
  const headers = new x402HTTPClient(client).encodePaymentSignatureHeader(payload)
  console.log(headers['PAYMENT-SIGNATURE'])
} else if (command === 'facilitator') {
  const [url, key] = args
  const http = await import('node:http')
  const { x402Facilitator } = await import(require.resolve('@x402/core/facilitator'))
  const { registerExactEvmScheme } = await import(require.resolve('@x402/evm/exact/facilitator'))
  const { toFacilitatorEvmSigner } = await import(require.resolve('@x402/evm'))
  const { foundry } = await import(require.resolve('viem/chains'))
  const client = viem
    .createWalletClient({ account: privateKeyToAccount(key), chain: foundry, transport: viem.http(url) })
    .extend(viem.publicActions)
  const facilitator = new x402Facilitator()
  registerExactEvmScheme(facilitator, { signer: toFacilitatorEvmSigner(client), networks: 'eip155:31337' })
  const server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => { body += c })
    req.on('end', async () => {
      if (req.method !== 'POST' || req.url !== '/settle') {
        res.writeHead(404).end()
        return
      }
      try {
        const { paymentPayload, paymentRequirements } = JSON.parse(body)
        const settled = await facilitator.settle(paymentPayload, paymentRequirements)
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(settled))
      } catch (e) {
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(e) }))
      }
    })
  })
  server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })))
} else {
  console.error(`unknown command ${command}`)
  process.exit(2)
}
