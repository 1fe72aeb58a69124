// A real authorization server for turnpike-oauth's tests: oidc-provider (npm), on 127.0.0.1.
//
// Input, from the environment (set by tests/common/mod.rs):
//   TP_OIDC_PROVIDER   directory of the installed oidc-provider package
//   TP_ISSUER_PATH     "" or a path such as "/as": the provider is mounted there and the issuer is
//                      http://127.0.0.1:<port><path>
//   TP_AS_KEYS         JSON array of private JWKs the server signs with (the test makes them, so
//                      it can also forge tokens with a key the server publishes); an RSA key is
//                      generated here
//   TP_CLIENT_JWKS     public JWKS of the private_key_jwt client (RFC 7523)
//   TP_CLIENT_SECRET   secret of the client_secret_basic client
//   TP_RS_SECRET       secret of the resource server's own client (token introspection)
//   TP_RESOURCES       JSON {resourceUrl: {alg, format: "jwt"|"opaque", scope, ttl}}
//   TP_EXCHANGE        optional JSON {"subject_audience": url, "audiences": [..], "ttl": secs}:
//                      turns on an RFC 8693 token-exchange grant for turnpike-rs (below)
//   TP_EXTRA_CLAIMS    optional JSON {clientId: {claim: value, ...}}: claims added to every
//                      access token issued to that client (oidc-provider's extraTokenClaims;
//                      in a JWT's payload, or in the introspection answer of an opaque token)
//
// Output: one JSON line on stdout, {"issuer": "...", "port": N}, once listening. The process ends
// when its stdin closes (the test that started it is gone).
//
// Clients:
//   agent-secret  client_credentials, client_secret_basic
//   agent-jwt     client_credentials, private_key_jwt (ES256 assertion signed by the test)
//   turnpike-rs   client_secret_basic; the resource server, for introspection
// Features: clientCredentials, resourceIndicators (JWT or opaque access tokens per resource,
// audience = the resource), introspection, dPoP; with TP_EXCHANGE, the grant
// urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693), registered through
// provider.registerGrantType: turnpike-rs presents a JWT access token this server issued for
// subject_audience (subject_token_type access_token) and names one of `audiences` in `audience`
// or `resource`; it gets an ES256 JWT for that audience, signed with the server's first key,
// carrying the subject's sub and client_id, the scope asked for, and act = {sub: turnpike-rs}.
// Refusals are RFC 6749 errors: invalid_request, invalid_grant (a bad subject token),
// invalid_target (an audience not listed).

import crypto from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) {
    console.error(`provider.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
};

const { default: Provider, errors } = await import(
  pathToFileURL(path.join(env('TP_OIDC_PROVIDER'), 'lib', 'index.js')).href
);

const issuerPath = env('TP_ISSUER_PATH');
const asKeys = JSON.parse(env('TP_AS_KEYS'));
const clientJwks = JSON.parse(env('TP_CLIENT_JWKS'));
const resources = JSON.parse(env('TP_RESOURCES'));

const { privateKey: rsaKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsaJwk = { ...rsaKey.export({ format: 'jwk' }), kid: 'rs-1', use: 'sig' };

const extraClaims = process.env.TP_EXTRA_CLAIMS ? JSON.parse(process.env.TP_EXTRA_CLAIMS) : {};
const exchange = process.env.TP_EXCHANGE ? JSON.parse(process.env.TP_EXCHANGE) : null;
const EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
// jose is oidc-provider's own dependency, installed beside it.
const jose = exchange
  ? await import(
      pathToFileURL(path.join(env('TP_OIDC_PROVIDER'), '..', 'jose', 'dist', 'webapi', 'index.js'))
        .href
    )
  : null;
const publicKeys = exchange
  ? jose.createLocalJWKSet({ keys: asKeys.map(({ d, ...pub }) => pub) })
  : null;
const signKey = exchange ? await jose.importJWK(asKeys[0], 'ES256') : null;
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const allScopes = [...new Set(Object.values(resources).flatMap((r) => r.scope.split(' ')))];
const clientBase = {
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope: allScopes.join(' '),
};

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}${issuerPath}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        ...clientBase,
        client_id: 'agent-secret',
        client_secret: env('TP_CLIENT_SECRET'),
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        ...clientBase,
        client_id: 'agent-jwt',
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: clientJwks,
      },
      {
        ...clientBase,
        client_id: 'turnpike-rs',
        grant_types: exchange ? ['client_credentials', EXCHANGE_GRANT] : ['client_credentials'],
        client_secret: env('TP_RS_SECRET'),
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [...asKeys, rsaJwk] },
    cookies: { keys: ['turnpike-oauth-tests'] },
    scopes: allScopes,
    extraTokenClaims: (_ctx, token) => extraClaims[token.clientId],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          const r = resources[resourceIndicator];
          if (!r) {
            throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          }
          const info = {
            scope: r.scope,
            audience: resourceIndicator,
            accessTokenTTL: r.ttl ?? 600,
            accessTokenFormat: r.format ?? 'jwt',
          };
          if (info.accessTokenFormat === 'jwt') {
            info.jwt = { sign: { alg: r.alg ?? 'ES256' } };
          }
          return info;
        },
      },
    },
  });
  if (exchange) {
    provider.registerGrantType(
      EXCHANGE_GRANT,
      async (ctx) => {
        const p = ctx.oidc.params;
        if (p.subject_token_type !== ACCESS_TOKEN_TYPE || !p.subject_token) {
          throw new errors.InvalidRequest('subject_token of type access_token required');
        }
        let subject;
        try {
          ({ payload: subject } = await jose.jwtVerify(p.subject_token, publicKeys, {
            issuer,
            audience: exchange.subject_audience,
          }));
        } catch (e) {
          throw new errors.InvalidGrant(`subject_token: ${e.code ?? e.message}`);
        }
        const target = p.audience ?? p.resource;
        if (!target || !exchange.audiences.includes(target)) {
          throw new errors.InvalidTarget('this audience may not be asked for');
        }
        const now = Math.floor(Date.now() / 1000);
        const ttl = exchange.ttl ?? 300;
        const claims = {
          sub: subject.sub,
          client_id: subject.client_id,
          act: { sub: ctx.oidc.client.clientId },
          jti: crypto.randomUUID(),
        };
        if (p.scope) claims.scope = p.scope;
        const token = await new jose.SignJWT(claims)
          .setProtectedHeader({ alg: 'ES256', kid: asKeys[0].kid, typ: 'at+jwt' })
          .setIssuer(issuer)
          .setAudience(target)
          .setIssuedAt(now)
          .setExpirationTime(now + ttl)
          .sign(signKey);
        ctx.body = {
          access_token: token,
          issued_token_type: ACCESS_TOKEN_TYPE,
          token_type: 'Bearer',
          expires_in: ttl,
        };
      },
      ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'scope', 'resource'],
    );
  }
  provider.on('server_error', (_ctx, err) => console.error('provider server_error:', err));
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (issuerPath) {
      if (req.url !== issuerPath && !req.url.startsWith(`${issuerPath}/`)) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"error":"not_found"}');
        return;
      }
      req.originalUrl = req.url;
      req.url = req.url.slice(issuerPath.length) || '/';
    }
    callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

// Output the test no longer reads must not bring the server down.
process.stdout.on('error', () => {});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
