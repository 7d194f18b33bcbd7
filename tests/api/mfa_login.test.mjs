// MFA in the hosted login (issue 7), black box with openid-client: a customer with a
// confirmed TOTP soft token signs in with the password, then a soft-token code; the tokens
// say so (acr urn:boveda:loa:2, amr [pwd, otp, mfa]). A wrong code and a replayed code are
// refused on the second step.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as oidc from 'openid-client';

import { startServer } from './lib/server.mjs';
import { adminJson, base32Decode, totp } from './lib/tools.mjs';
import { Browser, loginFields as fields } from './lib/login.mjs';

const SPA_REDIRECT = 'http://localhost:5173/callback';
const PASSWORD = 'correct horse battery staple';
const insecure = { execute: [oidc.allowInsecureRequests] };

describe('hosted login with a TOTP second step', () => {
    let srv;
    let spa;
    let seed;
    let confirmedAt;
    let passwordGrant;

    before(async () => {
        srv = await startServer();
        adminJson(srv, ['demo-seed', '--password-stdin'], `${PASSWORD}\n`);
        const legacy = adminJson(srv, ['clients', 'create', '--name', 'legacy', '--grant', 'password', '--scope', 'openid',
            '--legacy-password']);
        passwordGrant = () => srv.request('POST', '/oauth2/token', {
            headers: {
                'content-type': 'application/x-www-form-urlencoded',
                authorization: `Basic ${Buffer.from(`${legacy.client_id}:${legacy.client_secret}`).toString('base64')}`,
            },
            body: new URLSearchParams({ grant_type: 'password', username: 'demo', password: PASSWORD, scope: 'openid' }).toString(),
        });
        const t = await passwordGrant();
        assert.equal(t.status, 200, t.text);
        const token = t.json.access_token;
        const e = await srv.request('POST', '/v1/me/totp', { token });
        assert.equal(e.status, 201, e.text);
        seed = base32Decode(e.json.secret);
        confirmedAt = Date.now() / 1000;
        const c = await srv.request('POST', '/v1/me/totp/confirm', { token, body: { code: totp(seed, confirmedAt) } });
        assert.equal(c.status, 200, c.text);
        spa = await oidc.discovery(new URL(srv.url), 'boveda-web', undefined, oidc.None(), insecure);
    });
    after(async () => {
        if (srv?.running) await srv.stop();
    });

    it('refuses the legacy password grant once the user has a second factor', async () => {
        const r = await passwordGrant();
        assert.equal(r.status, 400);
        assert.equal(r.json.error, 'invalid_grant');
        assert.match(r.json.error_description, /second factor/);
    });

    async function startLogin() {
        const b = new Browser();
        const code_verifier = oidc.randomPKCECodeVerifier();
        const state = oidc.randomState();
        const nonce = oidc.randomNonce();
        const url = oidc.buildAuthorizationUrl(spa, {
            redirect_uri: SPA_REDIRECT, scope: 'openid profile', state, nonce,
            code_challenge: await oidc.calculatePKCECodeChallenge(code_verifier), code_challenge_method: 'S256',
        });
        const page = await b.fetch(url.href);
        assert.equal(page.status, 200);
        const r = await b.post(srv.url, { ...fields(await page.text()), username: 'demo', password: PASSWORD });
        assert.equal(r.status, 200, 'the password is not the last step');
        const html = await r.text();
        const f = fields(html);
        assert.equal(f.step, 'otp');
        assert.match(f.challenge, /^[0-9a-f-]{36}$/);
        assert.match(html, /autocomplete="one-time-code"/);
        return { b, f, code_verifier, state, nonce };
    }

    it('asks for the soft-token code after the password; amr says otp', { timeout: 60000 }, async () => {
        const { b, f, code_verifier, state, nonce } = await startLogin();
        const good = totp(seed, confirmedAt + 30); // the confirmation's step is spent: the next one
        const wrong = good === '000000' ? '000001' : '000000';
        let r = await b.post(srv.url, { ...f, code: wrong });
        assert.equal(r.status, 401);
        assert.match(await r.text(), /Código incorrecto/);
        r = await b.post(srv.url, { ...f, code: good });
        assert.equal(r.status, 303);
        const loc = new URL(r.headers.get('location'));
        assert.equal(loc.origin + loc.pathname, SPA_REDIRECT);
        const tokens = await oidc.authorizationCodeGrant(spa, loc, {
            pkceCodeVerifier: code_verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
        });
        const claims = tokens.claims();
        assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
        assert.equal(claims.acr, 'urn:boveda:loa:2');
        const at = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url'));
        assert.deepEqual(at.amr, ['pwd', 'otp', 'mfa']);

        // the same code in another login is a replay
        const second = await startLogin();
        r = await second.b.post(srv.url, { ...second.f, code: good });
        assert.equal(r.status, 401);
    });
});
