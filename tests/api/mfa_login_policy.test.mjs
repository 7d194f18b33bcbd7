// MFA login policy "all" (issue 7), black box with openid-client: every customer gets a
// second step. A customer without a soft token gets an SMS code (read from the SMS provider
// fake) or, without a phone, an e-mail code (SMTP sink); the page says where the code went
// (masked), a wrong code is asked again, a new code can be requested; the tokens say how the
// customer logged in (amr otp [+ sms] + mfa, acr loa:2). A customer with no factor at all is
// refused (and audited); the legacy password grant is refused for everyone.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as oidc from 'openid-client';

import { startServer } from './lib/server.mjs';
import { notifyEnv, startSmsFake } from './lib/smsfake.mjs';
import { startSmtpSink } from './lib/smtpsink.mjs';
import { adminJson, sqlite } from './lib/tools.mjs';
import { Browser, loginFields as fields } from './lib/login.mjs';

const SPA_REDIRECT = 'http://localhost:5173/callback';
const PASSWORD = 'correct horse battery staple';
const insecure = { execute: [oidc.allowInsecureRequests] };

describe('login policy "all": a second step for every customer', () => {
    let srv;
    let sms;
    let sink;
    let spa;
    let legacy;
    let nilId;

    before(async () => {
        sms = await startSmsFake();
        sink = await startSmtpSink();
        srv = await startServer({
            env: {
                BOVEDA_MFA_LOGIN_POLICY: 'all',
                BOVEDA_MFA_MAX_CHALLENGES_15MIN: '3',
                ...notifyEnv({ smtp: { url: sink.url }, sms: { provider: 'webhook', url: sms.url } }),
            },
        });
        adminJson(srv, ['demo-seed', '--password-stdin'], `${PASSWORD}\n`);
        adminJson(srv, ['users', 'create', '--username', 'ana', '--phone', '+34600111222', '--password-stdin'], `${PASSWORD}\n`);
        adminJson(srv, ['users', 'create', '--username', 'eva', '--email', 'eva@example.com', '--password-stdin'], `${PASSWORD}\n`);
        nilId = adminJson(srv, ['users', 'create', '--username', 'nil', '--password-stdin'], `${PASSWORD}\n`).id;
        legacy = adminJson(srv, ['clients', 'create', '--name', 'legacy', '--grant', 'password', '--scope', 'openid', '--legacy-password']);
        spa = await oidc.discovery(new URL(srv.url), 'boveda-web', undefined, oidc.None(), insecure);
    });
    after(async () => {
        try {
            await srv?.stop();
        } finally {
            await sms?.close();
            await sink?.close();
        }
    });

    async function login(username) {
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
        const r = await b.post(srv.url, { ...fields(await page.text()), username, password: PASSWORD });
        return { b, r, html: await r.text(), code_verifier, state, nonce };
    }

    async function tokensFrom(r, l) {
        assert.equal(r.status, 303);
        const loc = new URL(r.headers.get('location'));
        assert.equal(loc.origin + loc.pathname, SPA_REDIRECT);
        return oidc.authorizationCodeGrant(spa, loc, {
            pkceCodeVerifier: l.code_verifier, expectedState: l.state, expectedNonce: l.nonce, idTokenExpected: true,
        });
    }

    async function smsCode(from) {
        const reqs = await sms.waitFor((all) => all.length > from);
        const code = /(\d{6})/.exec(reqs[from].body)?.[1];
        assert.ok(code, `a 6-digit code in the SMS: ${reqs[from].body}`);
        assert.equal(reqs[from].to, '+34600111222');
        return code;
    }

    it('sends an SMS code to a customer with a phone and no soft token; amr has otp and sms', { timeout: 60000 }, async () => {
        const before = sms.requests.length;
        const l = await login('ana');
        assert.equal(l.r.status, 200, l.html);
        let f = fields(l.html);
        assert.equal(f.step, 'otp');
        assert.match(f.challenge, /^[0-9a-f-]{36}$/);
        assert.match(l.html, /por SMS al <strong id="destination">\+34\*{5}1222<\/strong>/);
        assert.ok(!l.html.includes('600111'), 'the phone is masked');
        const first = await smsCode(before);

        // a wrong code: the same challenge is asked again, nothing revealed
        const wrong = first === '000000' ? '000001' : '000000';
        let r = await l.b.post(srv.url, { ...f, code: wrong });
        assert.equal(r.status, 401);
        let html = await r.text();
        assert.match(html, /Código incorrecto/);
        assert.match(html, /\+34\*{5}1222/);
        assert.equal(fields(html).challenge, f.challenge);

        // a new code on request: a new challenge and a second SMS
        r = await l.b.post(srv.url, { ...f, resend: '1' });
        assert.equal(r.status, 200);
        html = await r.text();
        assert.match(html, /código nuevo/);
        const f2 = fields(html);
        assert.notEqual(f2.challenge, f.challenge);
        const second = await smsCode(before + 1);

        // rate limit (3 per 15 minutes): the third request is refused, the form stays
        r = await l.b.post(srv.url, { ...f2, resend: '1' });
        assert.equal(r.status, 200);
        const f3 = fields(await r.text());
        const third = await smsCode(before + 2);
        r = await l.b.post(srv.url, { ...f3, resend: '1' });
        assert.equal(r.status, 429);
        html = await r.text();
        assert.match(html, /No se pueden enviar más códigos/);
        assert.equal(fields(html).challenge, f3.challenge);
        assert.equal(sms.requests.length, before + 3, 'no SMS for the refused request');
        assert.notEqual(second, undefined);

        r = await l.b.post(srv.url, { ...f3, code: third });
        const tokens = await tokensFrom(r, l);
        const claims = tokens.claims();
        assert.deepEqual(claims.amr, ['pwd', 'otp', 'sms', 'mfa']);
        assert.equal(claims.acr, 'urn:boveda:loa:2');
        const at = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url'));
        assert.ok(at.amr.includes('otp'));
        assert.equal(at.acr, 'urn:boveda:loa:2');

        const dump = sqlite(srv, "SELECT group_concat(details, ' ') FROM audit_log WHERE action LIKE 'mfa.%'");
        for (const c of [first, second, third]) {
            assert.ok(!dump.includes(c), 'no code in the audit');
            assert.ok(!srv.stderr.includes(`"${c}"`), 'no code in the logs');
        }
    });

    it('sends an e-mail code to a customer with only an e-mail address', { timeout: 60000 }, async () => {
        const before = sink.messages.length;
        const l = await login('eva');
        assert.equal(l.r.status, 200, l.html);
        const f = fields(l.html);
        assert.equal(f.step, 'otp');
        assert.match(l.html, /por correo a <strong id="destination">e\*\*\*@example\.com<\/strong>/);
        const msgs = await sink.waitFor((m) => m.length > before);
        assert.deepEqual(msgs[before].to, ['eva@example.com']);
        const code = /(\d{6})/.exec(msgs[before].text)?.[1];
        assert.ok(code);
        const r = await l.b.post(srv.url, { ...f, code });
        const claims = (await tokensFrom(r, l)).claims();
        assert.deepEqual(claims.amr, ['pwd', 'otp', 'mfa']);
        assert.equal(claims.acr, 'urn:boveda:loa:2');
    });

    it('refuses a customer with no second factor at all, and audits it', { timeout: 60000 }, async () => {
        const l = await login('nil');
        assert.equal(l.r.status, 403);
        assert.match(l.html, /id="no_second_factor"/);
        assert.match(l.html, /segundo factor/);
        assert.equal(fields(l.html).step, undefined, 'no form');
        assert.equal(sqlite(srv, `SELECT count(*) FROM audit_log WHERE action = 'mfa.login.refuse' AND actor = 'user:${nilId}' AND outcome = 'denied'`), '1');
    });

    it('refuses the legacy password grant under policy "all"', async () => {
        const r = await srv.request('POST', '/oauth2/token', {
            headers: {
                'content-type': 'application/x-www-form-urlencoded',
                authorization: `Basic ${Buffer.from(`${legacy.client_id}:${legacy.client_secret}`).toString('base64')}`,
            },
            body: new URLSearchParams({ grant_type: 'password', username: 'eva', password: PASSWORD, scope: 'openid' }).toString(),
        });
        assert.equal(r.status, 400);
        assert.equal(r.json.error, 'invalid_grant');
        assert.match(r.json.error_description, /second factor/);
    });
});
