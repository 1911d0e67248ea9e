// A real OpenID Connect provider (panva's certified oidc-provider) on loopback, for end-to-end
// tests of the server's sign-in. See README.md next to this file.
//
// Environment:
//   OIDC_PORT     port on OIDC_HOST (0 or unset: pick a free one)
//   OIDC_HOST     address to listen on and to name in the issuer URL: 127.0.0.1 (default), or
//                 another address of this machine, e.g. a real node's bridge address so that pods
//                 (the server installed by the chart) reach the same issuer as the test's browser
//   OIDC_CLIENTS  JSON array of {client_id, client_secret, redirect_uris}
//
// Prints exactly one line on stdout, `listening http://<host>:<port>`, once it accepts
// connections; everything else (oidc-provider notices, errors) goes to stderr. Nothing secret
// (client secrets, codes, tokens, keys) is logged.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK } from 'jose';
import Provider from 'oidc-provider';

// stdout carries only the `listening` line; oidc-provider prints its notices with console.info.
console.info = console.error;
console.log = console.error;

const BODY_LIMIT = 64 * 1024;

function fail(message) {
  console.error(`hack/oidc/provider.mjs: ${message}`);
  process.exit(2);
}

function parseClients(raw) {
  let clients;
  try {
    clients = JSON.parse(raw ?? '[]');
  } catch (err) {
    fail(`OIDC_CLIENTS is not valid JSON: ${err.message}`);
  }
  if (!Array.isArray(clients)) fail('OIDC_CLIENTS must be a JSON array');
  return clients.map((c, i) => {
    if (typeof c?.client_id !== 'string' || !c.client_id) fail(`OIDC_CLIENTS[${i}].client_id missing`);
    if (typeof c.client_secret !== 'string' || !c.client_secret) fail(`OIDC_CLIENTS[${i}].client_secret missing`);
    if (!Array.isArray(c.redirect_uris) || c.redirect_uris.length === 0) {
      fail(`OIDC_CLIENTS[${i}].redirect_uris must be a non-empty array`);
    }
    return {
      client_id: c.client_id,
      client_secret: c.client_secret,
      redirect_uris: c.redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      // client_secret_post is accepted as well (oidc-provider treats basic and post alike).
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    };
  });
}

// Claims of a login name: any name is an account.
function accountClaims(login) {
  return {
    sub: login,
    email: login.includes('@') ? login : `${login}@example.com`,
    email_verified: !login.startsWith('unverified'),
    name: login,
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > BODY_LIMIT) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, contentType, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const port = Number.parseInt(process.env.OIDC_PORT ?? '0', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail('OIDC_PORT must be a port number');
const clients = parseClients(process.env.OIDC_CLIENTS);
const host = process.env.OIDC_HOST || '127.0.0.1';
if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) fail('OIDC_HOST must be an IPv4 address of this machine, e.g. 127.0.0.1');

// The signing key exists only in this process; the harness keeps the private JWK to re-sign
// rewritten ID tokens with the same key and kid.
const { privateKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
const privateJwk = {
  ...(await exportJWK(privateKey)),
  kid: randomBytes(8).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};
const signingKey = await importJWK(privateJwk, 'RS256');

// The rewrite of the next ID token (POST /__harness/next-token), or null.
let nextTokenRewrite = null;

async function rewriteIdToken(idToken, rewrite) {
  const header = decodeProtectedHeader(idToken);
  const payload = decodeJwt(idToken);
  for (const [claim, value] of Object.entries(rewrite)) {
    if (claim === 'exp_offset_seconds') {
      payload.exp += value;
      payload.iat += value;
    } else if (value === null) {
      delete payload[claim];
    } else {
      payload[claim] = value;
    }
  }
  return new SignJWT(payload).setProtectedHeader(header).sign(signingKey);
}

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, host, resolve);
});
const issuer = `http://${host}:${server.address().port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [privateJwk] },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  responseTypes: ['code'],
  pkce: { required: () => true },
  scopes: ['openid'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Put the claims of the granted scopes (email, email_verified, name) in the ID token too, not
  // only in the userinfo response.
  conformIdTokenClaims: false,
  cookies: { keys: [randomBytes(32).toString('hex')] },
  // ID tokens live 10 minutes, so `{"exp_offset_seconds": -3600}` makes one well expired.
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
  },
  features: {
    devInteractions: { enabled: false },
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  findAccount: (_ctx, sub) => ({
    accountId: sub,
    claims: async () => accountClaims(sub),
  }),
  renderError: (ctx, out) => {
    ctx.type = 'text/plain; charset=utf-8';
    ctx.body = Object.entries(out).map(([k, v]) => `${k}: ${v}`).join('\n');
  },
});

provider.on('server_error', (_ctx, err) => console.error(`server_error: ${err.stack ?? err}`));

// Rewrites the ID token of the next successful token response when a test asked for it.
provider.use(async (ctx, next) => {
  await next();
  if (
    nextTokenRewrite !== null
    && ctx.method === 'POST'
    && ctx.path === '/token'
    && ctx.status === 200
    && typeof ctx.body?.id_token === 'string'
  ) {
    const rewrite = nextTokenRewrite;
    nextTokenRewrite = null;
    ctx.body = { ...ctx.body, id_token: await rewriteIdToken(ctx.body.id_token, rewrite) };
  }
});

const providerCallback = provider.callback();

async function interactionGet(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  const html = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in (test provider)</title></head>
<body>
<h1>Sign in to ${escapeHtml(details.params.client_id)}</h1>
<p>Test OpenID provider: any login name is accepted.</p>
<form method="post" action="/interaction/${escapeHtml(uid)}">
<input name="login" autofocus required>
<button type="submit">Sign in</button>
</form>
</body></html>
`;
  send(res, 200, 'text/html; charset=utf-8', html);
}

// Login and consent in one go: the account is the login name and the grant holds every scope and
// claim the client asked for.
async function interactionPost(req, res) {
  const details = await provider.interactionDetails(req, res);
  const form = new URLSearchParams(await readBody(req));
  const login = (form.get('login') ?? '').trim();
  if (!login) {
    send(res, 400, 'text/plain; charset=utf-8', 'login is required\n');
    return;
  }
  const { params } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: login, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(params.scope);
  if (params.claims) {
    const requested = JSON.parse(params.claims);
    const names = new Set([
      ...Object.keys(requested.id_token ?? {}),
      ...Object.keys(requested.userinfo ?? {}),
    ]);
    if (names.size) grant.addOIDCClaims([...names]);
  }
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: login }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

async function nextToken(req, res) {
  let rewrite;
  try {
    rewrite = JSON.parse(await readBody(req));
  } catch (err) {
    send(res, 400, 'text/plain; charset=utf-8', `body is not JSON: ${err.message}\n`);
    return;
  }
  if (rewrite === null || typeof rewrite !== 'object' || Array.isArray(rewrite)) {
    send(res, 400, 'text/plain; charset=utf-8', 'body must be a JSON object of claims\n');
    return;
  }
  if ('exp_offset_seconds' in rewrite && !Number.isInteger(rewrite.exp_offset_seconds)) {
    send(res, 400, 'text/plain; charset=utf-8', 'exp_offset_seconds must be an integer\n');
    return;
  }
  nextTokenRewrite = rewrite;
  res.statusCode = 204;
  res.end();
}

server.on('request', async (req, res) => {
  const { pathname } = new URL(req.url, issuer);
  const interaction = /^\/interaction\/([^/]+)$/.exec(pathname);
  try {
    if (interaction && req.method === 'GET') {
      await interactionGet(req, res, interaction[1]);
    } else if (interaction && req.method === 'POST') {
      await interactionPost(req, res);
    } else if (pathname === '/__harness/next-token' && req.method === 'POST') {
      await nextToken(req, res);
    } else {
      providerCallback(req, res);
    }
  } catch (err) {
    // Interaction errors (expired or unknown interaction, missing cookie) are the client's.
    const status = err.statusCode ?? 500;
    if (status >= 500) console.error(`error on ${req.method} ${pathname}: ${err.stack ?? err}`);
    if (!res.headersSent) {
      send(res, status, 'text/plain; charset=utf-8', `${err.name}: ${err.error_description ?? err.message}\n`);
    } else {
      res.end();
    }
  }
});

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));

process.stdout.write(`listening ${issuer}\n`);
