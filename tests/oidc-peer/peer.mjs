// A real OpenID Connect provider for ciam-rs tests: `oidc-provider` (panva), on 127.0.0.1.
//
// Usage: node peer.mjs REDIRECT_URI
// Prints one line `READY {"google":URL,"city":URL,"mixup":URL,"audience":URL,"redirector":URL}` once every
// server listens, then serves until killed (or until its standard input closes).
//
// - google: plays Google (RS256 ID tokens).
// - city:   plays City Group's own IdP (adds a `groups` claim).
// - mixup:  a genuine provider whose token endpoint hands out City Group's tokens (an IdP
//           mix-up): the ID token is validly signed (the keys are shared) but its issuer is
//           City Group's, which a client of `mixup` must refuse.
// - audience: a genuine provider whose token endpoint treats a code exchange by `smartplan` as
//           one by `another-client` (the Basic credentials are swapped), so a code issued to
//           `another-client` yields a validly signed ID token whose audience is not ours.
// - redirector: answers every request with a redirect to `google`: back-channel calls must
//           not follow it.
//
// Clients at each provider: `smartplan` (RS256 ID tokens), `smartplan-es256` (ES256) and
// `another-client` (RS256, another relying party), all with secret `smartplan-secret` and the
// given redirect URI. PKCE (S256) is required.
// The browser leg uses the development interactions: POST `prompt=login&login=ACCOUNT` to
// /interaction/:uid; consent is given automatically.

import http from 'node:http';
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

// Standard output carries only the READY line (the test stops reading it after that).
console.log = console.error;
console.info = console.error;

const redirectUri = process.argv[2];
if (!redirectUri) {
  console.error('usage: node peer.mjs REDIRECT_URI');
  process.exit(2);
}

const ACCOUNTS = {
  karl: {
    email: 'karl.kearnes@gmail.com', email_verified: true, given_name: 'Karl', family_name: 'Kearnes',
  },
  jeremy: {
    email: 'jeremy.mills@citygroup.example', email_verified: true, given_name: 'Jeremy', family_name: 'Mills',
  },
  anna: {
    email: 'anna.virtanen@citygroup.example', email_verified: true, given_name: 'Anna', family_name: 'Virtanen', groups: ['energy', 'staff'],
  },
  ville: {
    email: 'ville.nieminen@citygroup.example', email_verified: false, given_name: 'Ville', family_name: 'Nieminen', groups: ['finance'],
  },
  unverified: {
    email: 'somebody@gmail.com', email_verified: false, given_name: 'Some', family_name: 'Body',
  },
};

async function signingKeys() {
  const rsa = await generateKeyPair('RS256', { extractable: true });
  const ec = await generateKeyPair('ES256', { extractable: true });
  return [
    { ...(await exportJWK(rsa.privateKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
    { ...(await exportJWK(ec.privateKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
  ];
}

function listen(server) {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

function configuration(keys) {
  const client = {
    client_secret: 'smartplan-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  };
  return {
    clients: [
      { ...client, client_id: 'smartplan' },
      { ...client, client_id: 'smartplan-es256', id_token_signed_response_alg: 'ES256' },
      { ...client, client_id: 'another-client' },
    ],
    jwks: { keys },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['given_name', 'family_name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // Claims in the ID token itself, as Google does.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    pkce: { required: () => true },
    cookies: { keys: ['ciam-oidc-peer-test-only'] },
    async findAccount(ctx, id) {
      const claims = ACCOUNTS[id];
      if (!claims) {
        return undefined;
      }
      return { accountId: id, async claims() { return { sub: id, ...claims }; } };
    },
    // Consent is given at once (the test plays a user who always agrees).
    async loadExistingGrant(ctx) {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile groups');
      grant.addOIDCClaims(['email', 'email_verified', 'given_name', 'family_name', 'groups']);
      await grant.save();
      return grant;
    },
  };
}

async function provider(keys, intercept) {
  let handler = (req, res) => { res.statusCode = 503; res.end(); };
  const server = http.createServer((req, res) => {
    if (intercept && intercept(req, res)) {
      return;
    }
    handler(req, res);
  });
  const port = await listen(server);
  const issuer = `http://127.0.0.1:${port}`;
  const oidc = new Provider(issuer, configuration(keys));
  handler = oidc.callback();
  return issuer;
}

const keys = await signingKeys();
const google = await provider(keys);
const city = await provider(keys);
const cityToken = new URL('/token', city);
const mixup = await provider(keys, (req, res) => {
  if (req.method !== 'POST' || !req.url.startsWith('/token')) {
    return false;
  }
  const forward = http.request(cityToken, { method: 'POST', headers: { ...req.headers, host: cityToken.host } }, (answer) => {
    res.writeHead(answer.statusCode, answer.headers);
    answer.pipe(res);
  });
  forward.on('error', () => { res.statusCode = 502; res.end(); });
  req.pipe(forward);
  return true;
});
const smartplanBasic = `Basic ${Buffer.from('smartplan:smartplan-secret').toString('base64')}`;
const anotherBasic = `Basic ${Buffer.from('another-client:smartplan-secret').toString('base64')}`;
const audience = await provider(keys, (req) => {
  if (req.method === 'POST' && req.url.startsWith('/token') && req.headers.authorization === smartplanBasic) {
    req.headers.authorization = anotherBasic;
  }
  return false;
});
const redirectorServer = http.createServer((req, res) => {
  res.writeHead(302, { location: new URL(req.url, google).href });
  res.end();
});
const redirector = `http://127.0.0.1:${await listen(redirectorServer)}`;

process.stdout.write(`READY ${JSON.stringify({ google, city, mixup, audience, redirector })}\n`);
// Stop with the test process.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
