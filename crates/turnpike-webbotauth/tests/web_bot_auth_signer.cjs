// Signs requests with Cloudflare's web-bot-auth package for tests/web_bot_auth_npm.rs.
// Reads {now, cases: [{name, url, headers, created, expires, components?, signWith, keyidOf}]}
// on stdin (times in seconds); prints {directory, thumbprints, signed: {name: headers}}.
"use strict";
const crypto = require("node:crypto");
const { signatureHeaders, jwkToKeyID, helpers } = require("web-bot-auth");

function keyPair() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519");
  return { privateKey, jwk: publicKey.export({ format: "jwk" }) };
}

async function main() {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const { cases } = JSON.parse(input);
  const keys = { a: keyPair(), b: keyPair() };
  const thumbprints = {};
  for (const [name, key] of Object.entries(keys)) {
    thumbprints[name] = await jwkToKeyID(key.jwk, helpers.WEBCRYPTO_SHA256, helpers.BASE64URL_DECODE);
  }
  const signed = {};
  for (const c of cases) {
    // A signer that names one key (keyidOf) and signs with another (signWith): the
    // wrong-key case; for every other case the two are the same.
    const signer = {
      alg: "ed25519",
      keyid: thumbprints[c.keyidOf],
      sign: async (data) =>
        new Uint8Array(crypto.sign(null, Buffer.from(data), keys[c.signWith].privateKey)),
    };
    const request = new Request(c.url, { method: c.method || "GET", headers: c.headers || {} });
    const params = { created: new Date(c.created * 1000), expires: new Date(c.expires * 1000) };
    if (c.components) params.components = c.components;
    signed[c.name] = await signatureHeaders(request, signer, params);
  }
  process.stdout.write(
    JSON.stringify({ directory: { keys: [keys.a.jwk] }, thumbprints, signed }) + "\n",
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
