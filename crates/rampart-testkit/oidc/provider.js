// A real OpenID Connect provider (npm oidc-provider) for Rampart's tests, on 127.0.0.1.
// Started by crates/rampart-testkit/src/oidc.rs; prints `READY <port>` once it listens.
//
// Environment:
//   OIDC_PORT            port to listen on (0: any free one)
//   OIDC_CLIENT_SECRET   the secret of the confidential client `rampart` (client_secret_basic)
//   OIDC_OTHER_SECRET    the secret of a second client, `other-app`
//   OIDC_REDIRECT_URIS   comma-separated redirect URIs registered for both clients
//
// Test-only routes (nothing like them in a real provider):
//   GET  /interaction/:uid        what the provider is asking (JSON), instead of a login page
//   POST /interaction/:uid        form `login=<account>`: logs that account in (no password),
//                                 consent is implied (see loadExistingGrant)
//   POST /__test/account          JSON {login, preferred_username?, groups?}: sets an account's claims
//   POST /__test/id_token         JSON {mode}: how the next /token responses' ID token is
//                                 rewritten (`at`: unix time `expired` is relative to): none | wrong_audience | expired | nonce_mismatch |
//                                 foreign_key | flipped_signature | two_audiences_no_azp

import http from 'node:http';
import { Provider } from 'oidc-provider';
import * as jose from 'jose';

const port = Number(process.env.OIDC_PORT || 0);
const clientSecret = process.env.OIDC_CLIENT_SECRET || '';
const otherSecret = process.env.OIDC_OTHER_SECRET || 'other-secret-0123456789abcdef0123456789';
const redirectUris = (process.env.OIDC_REDIRECT_URIS || '').split(',').filter(Boolean);

// The provider's signing key, made fresh at start, and a foreign one for forged tokens.
const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
// A new key id at each start, as a provider that rotates its key publishes one.
const kid = `key-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
const foreign = (await jose.generateKeyPair('RS256', { extractable: true })).privateKey;

const accounts = new Map();
function account(login) {
  if (!accounts.has(login)) {
    accounts.set(login, { sub: `sub-${login}`, preferred_username: login, email: `${login}@example.test`, groups: [] });
  }
  return accounts.get(login);
}
account('alice').groups = ['staff'];
account('bob').groups = ['admins'];

let idTokenMode = 'none';
let idTokenAt = null;

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'rampart',
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
    {
      client_id: 'other-app',
      client_secret: otherSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  jwks: { keys: [signingJwk] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'groups'],
    email: ['email'],
  },
  // Scope claims go into the ID token itself, not only to userinfo.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const a = [...accounts.values()].find((x) => x.sub === id);
    if (!a) return undefined;
    return { accountId: id, claims: async () => ({ ...a }) };
  },
  // First-party clients: consent is implied, so a login is the only interaction.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const found = await ctx.oidc.provider.Grant.find(grantId);
      if (found) return found;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    await grant.save();
    return grant;
  },
});

async function rewrite(idToken) {
  const claims = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  let key = privateKey;
  switch (idTokenMode) {
    case 'wrong_audience': claims.aud = 'other-app'; break;
    // `at`: the caller's clock (Rampart's tests run on a fake one), else this process's.
    case 'expired': { const t = idTokenAt ?? now; claims.iat = t - 3660; claims.exp = t - 60; break; }
    case 'nonce_mismatch': claims.nonce = 'not-the-nonce-rampart-sent'; break;
    case 'two_audiences_no_azp': claims.aud = [claims.aud, 'other-app']; delete claims.azp; break;
    case 'foreign_key': key = foreign; break;
    case 'flipped_signature': {
      const [h, p, s] = idToken.split('.');
      const sig = Buffer.from(s, 'base64url');
      sig[0] ^= 0x01;
      return `${h}.${p}.${sig.toString('base64url')}`;
    }
    default: return idToken;
  }
  return new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid, typ: 'JWT' }).sign(key);
}

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && ctx.method === 'POST' && ctx.body && typeof ctx.body === 'object' && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: await rewrite(ctx.body.id_token) };
  }
});

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (c) => { data += c; if (data.length > 65536) req.destroy(); });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const callback = provider.callback();
server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      if (req.method === 'GET') return json(res, 200, { uid: details.uid, prompt: details.prompt.name });
      const form = new URLSearchParams(await readBody(req));
      const login = form.get('login');
      if (!login) return json(res, 400, { error: 'login required' });
      return await provider.interactionFinished(req, res, { login: { accountId: account(login).sub } }, { mergeWithLastSubmission: false });
    }
    if (url.pathname === '/__test/account' && req.method === 'POST') {
      const body = JSON.parse(await readBody(req));
      const a = account(body.login);
      if (body.preferred_username !== undefined) a.preferred_username = body.preferred_username;
      if (body.groups !== undefined) a.groups = body.groups;
      return json(res, 200, a);
    }
    if (url.pathname === '/__test/id_token' && req.method === 'POST') {
      const body = JSON.parse(await readBody(req));
      idTokenMode = body.mode;
      idTokenAt = body.at ?? null;
      return json(res, 200, { mode: idTokenMode });
    }
    return callback(req, res);
  } catch (e) {
    return json(res, 500, { error: String(e && e.message) });
  }
});

process.stdout.write(`READY ${server.address().port}\n`);
