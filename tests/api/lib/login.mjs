// The hosted login driven like a browser (cookies, hidden form fields), for tests that sign a
// customer in with openid-client: authorization code + PKCE through /oauth2/authorize and the
// login steps (password, then a one-time code when the policy asks for one).
//
//   const spa = await oidc.discovery(new URL(srv.url), 'boveda-web', undefined, oidc.None(), insecure);
//   const l = await startLogin(spa, srv.url, { username, password, scope });
//   // l.step === 'otp': read the code (SMS fake, SMTP sink), then
//   const tokens = await finishLogin(spa, l, code);
import assert from 'node:assert/strict';

import * as oidc from 'openid-client';

export const SPA_REDIRECT = 'http://localhost:5173/callback';
export const insecure = { execute: [oidc.allowInsecureRequests] };

/** A cookie jar with fetch, never following redirects. */
export class Browser {
    constructor() {
        this.jar = new Map();
    }

    async fetch(url, init = {}) {
        const headers = { ...(init.headers ?? {}) };
        if (this.jar.size > 0) headers.cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
        const r = await fetch(url, { ...init, headers, redirect: 'manual' });
        for (const sc of r.headers.getSetCookie()) {
            const [pair, ...attrs] = sc.split(';');
            const eq = pair.indexOf('=');
            const name = pair.slice(0, eq).trim();
            const value = pair.slice(eq + 1).trim();
            if (attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '') this.jar.delete(name);
            else this.jar.set(name, value);
        }
        return r;
    }

    /** POSTs the login form. */
    post(base, fields) {
        return this.fetch(`${base}/oauth2/login`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: new URLSearchParams(fields).toString(),
        });
    }
}

/** The hidden fields of a login page (tx, csrf_token, step, challenge). */
export function loginFields(html) {
    const get = (n) => new RegExp(`name="${n}" value="([^"]*)"`).exec(html)?.[1];
    const out = { tx: get('tx'), csrf_token: get('csrf_token'), step: get('step') };
    const ch = get('challenge');
    if (ch) out.challenge = ch;
    return out;
}

/** Opens the authorization request and submits the password. Returns the login state:
 * {browser, response, html, step ('otp' when a code is asked, null after a redirect),
 * fields, verifier, state, nonce}. */
export async function startLogin(spa, base, { username, password, scope = 'openid' }) {
    const browser = new Browser();
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(spa, {
        redirect_uri: SPA_REDIRECT, scope, state, nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const page = await browser.fetch(url.href);
    assert.equal(page.status, 200, 'the login page');
    const response = await browser.post(base, { ...loginFields(await page.text()), username, password });
    const html = response.status === 200 ? await response.text() : '';
    const fields = loginFields(html);
    return { browser, base, response, html, fields, step: fields.step ?? null, verifier, state, nonce };
}

/** Submits the one-time code (when the login asked for one) and exchanges the authorization
 * code: the openid-client token response. */
export async function finishLogin(spa, login, code) {
    let r = login.response;
    if (code !== undefined) r = await login.browser.post(login.base, { ...login.fields, code });
    assert.equal(r.status, 303, `the login should redirect back to the client (got ${r.status})`);
    const loc = new URL(r.headers.get('location'));
    assert.equal(loc.origin + loc.pathname, SPA_REDIRECT);
    return oidc.authorizationCodeGrant(spa, loc, {
        pkceCodeVerifier: login.verifier, expectedState: login.state, expectedNonce: login.nonce, idTokenExpected: true,
    });
}
