// Black-box interop tests of the authorization server (issue 5) with openid-client v6 and
// jose v6: discovery, the authorization-code + PKCE flow through the hosted login form,
// ID-token validation, refresh, userinfo, revocation, introspection, client credentials,
// private_key_jwt, and a negative test for every rule of the issue.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as jose from 'jose';
import * as oidc from 'openid-client';

import { startServer } from './lib/server.mjs';
import { adminJson, sqlite } from './lib/tools.mjs';

const SPA_REDIRECT = 'http://localhost:5173/callback';
const PASSWORD = 'correct horse battery staple';

function createUser(srv, username, password = PASSWORD, extra = []) {
    return adminJson(srv, ['users', 'create', '--username', username, '--email', `${username}@example.com`,
        '--password-stdin', ...extra], `${password}\n`);
}

/** A minimal browser: a cookie jar and manual redirects. */
class Browser {
    constructor() {
        this.jar = new Map();
    }
    cookieHeader() {
        return [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    async fetch(url, init = {}) {
        const headers = { ...(init.headers ?? {}) };
        if (this.jar.size > 0) headers.cookie = this.cookieHeader();
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
}

function formFields(html) {
    const get = (n) => new RegExp(`name="${n}" value="([^"]*)"`).exec(html)?.[1];
    return { tx: get('tx'), csrf_token: get('csrf_token'), step: get('step') };
}

async function postForm(browser, base, fields) {
    return browser.fetch(`${base}/oauth2/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields).toString(),
    });
}

/** Opens the authorization URL, fills the login form; returns the final response. */
async function login(browser, base, authUrl, username, password) {
    const page = await browser.fetch(authUrl);
    assert.equal(page.status, 200, 'login page');
    const html = await page.text();
    const f = formFields(html);
    assert.ok(f.tx && f.csrf_token, 'the login page carries the transaction and a CSRF token');
    const r = await postForm(browser, base, { ...f, username, password });
    return { r, html, fields: f };
}

async function authParams(extra = {}) {
    const code_verifier = oidc.randomPKCECodeVerifier();
    return {
        code_verifier,
        state: oidc.randomState(),
        nonce: oidc.randomNonce(),
        params: {
            redirect_uri: SPA_REDIRECT,
            scope: 'openid profile email banking:read',
            code_challenge: await oidc.calculatePKCECodeChallenge(code_verifier),
            code_challenge_method: 'S256',
            ...extra,
        },
    };
}

const insecure = { execute: [oidc.allowInsecureRequests] };

describe('OAuth 2 / OpenID Connect authorization server', () => {
    let srv;
    let spa; // openid-client Configuration of the public SPA client
    let svc; // {client_id, client_secret} confidential client_credentials client
    let svcConfig;
    let jwks;
    let issuer;

    before(async () => {
        srv = await startServer({
            env: { BOVEDA_LOGIN_MAX_FAILURES: '3', BOVEDA_LOGIN_DELAY_MS: '0', BOVEDA_LOGIN_IP_MAX_FAILURES: '1000' },
        });
        adminJson(srv, ['demo-seed', '--password-stdin'], `${PASSWORD}\n`);
        createUser(srv, 'ana');
        svc = adminJson(srv, ['clients', 'create', '--name', 'svc', '--grant', 'client_credentials', '--scope',
            'ledger:read ledger:write']);
        spa = await oidc.discovery(new URL(srv.url), 'boveda-web', undefined, oidc.None(), insecure);
        svcConfig = await oidc.discovery(new URL(srv.url), svc.client_id, svc.client_secret,
            oidc.ClientSecretBasic(svc.client_secret), insecure);
        issuer = spa.serverMetadata().issuer;
        jwks = jose.createRemoteJWKSet(new URL(spa.serverMetadata().jwks_uri));
    });
    after(async () => {
        if (srv?.running) await srv.stop();
    });

    async function fullLogin(username = 'demo', extra = {}) {
        const b = new Browser();
        const a = await authParams(extra);
        const url = oidc.buildAuthorizationUrl(spa, { ...a.params, state: a.state, nonce: a.nonce });
        const { r } = await login(b, srv.url, url.href, username, PASSWORD);
        assert.equal(r.status, 303, 'the login redirects back to the client');
        const loc = new URL(r.headers.get('location'));
        return { b, a, loc };
    }

    it('publishes discovery metadata and a JWKS with ES256 and RS256 keys', async () => {
        const m = spa.serverMetadata();
        assert.equal(m.issuer, srv.url);
        assert.deepEqual(m.response_types_supported, ['code']);
        assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
        assert.equal(m.authorization_response_iss_parameter_supported, true);
        assert.ok(m.end_session_endpoint.endsWith('/oauth2/logout'));
        const r = await srv.request('GET', '/oauth2/jwks');
        const algs = r.json.keys.map((k) => k.alg).sort();
        assert.ok(algs.includes('ES256') && algs.includes('RS256'));
        for (const k of r.json.keys) assert.equal(k.d, undefined, 'no private parts');
    });

    it('runs the authorization-code + PKCE flow through the hosted login (Spanish by default)', async () => {
        const b = new Browser();
        const a = await authParams();
        const url = oidc.buildAuthorizationUrl(spa, { ...a.params, state: a.state, nonce: a.nonce });
        const page = await b.fetch(url.href);
        const html = await page.text();
        assert.match(html, /<html lang="es">/);
        assert.match(html, /Iniciar sesión/);
        assert.doesNotMatch(html, /<(script|link|img)[^>]+(src|href)=/i, 'no external assets');
        const setCookie = page.headers.getSetCookie().join('\n');
        assert.match(setCookie, /__Host-boveda_session=[^;]+; Path=\/; Secure; HttpOnly; SameSite=Lax/);
        const r = await postForm(b, srv.url, { ...formFields(html), username: 'demo', password: PASSWORD });
        assert.equal(r.status, 303);
        const loc = new URL(r.headers.get('location'));
        assert.equal(loc.origin + loc.pathname, SPA_REDIRECT);
        assert.equal(loc.searchParams.get('state'), a.state);
        assert.equal(loc.searchParams.get('iss'), issuer);
        // the session is rotated at login (no fixation)
        assert.notEqual(b.jar.get('__Host-boveda_session'), /__Host-boveda_session=([^;]+)/.exec(setCookie)[1]);

        const tokens = await oidc.authorizationCodeGrant(spa, loc, {
            pkceCodeVerifier: a.code_verifier, expectedState: a.state, expectedNonce: a.nonce, idTokenExpected: true,
        });
        const claims = tokens.claims();
        assert.equal(claims.iss, issuer);
        assert.equal(claims.aud, 'boveda-web');
        assert.equal(claims.nonce, a.nonce);
        assert.deepEqual(claims.amr, ['pwd']);
        assert.ok(tokens.refresh_token.startsWith('bvr_'));
        assert.ok(tokens.expires_in <= 600);

        // tokens verified with jose against our JWKS
        const idt = await jose.jwtVerify(tokens.id_token, jwks, { issuer, audience: 'boveda-web' });
        assert.equal(idt.protectedHeader.alg, 'ES256');
        const at = await jose.jwtVerify(tokens.access_token, jwks, { issuer, audience: issuer, typ: 'at+jwt' });
        assert.equal(at.protectedHeader.alg, 'ES256');
        assert.equal(at.payload.client_id, 'boveda-web');
        assert.equal(at.payload.sub, claims.sub);
        assert.ok(at.payload.exp - at.payload.iat <= 600);
        for (const k of ['jti', 'scope', 'acr', 'amr', 'iat', 'exp']) assert.ok(k in at.payload, k);

        const info = await oidc.fetchUserInfo(spa, tokens.access_token, claims.sub);
        assert.equal(info.preferred_username, 'demo');
        assert.equal(info.email, 'demo@boveda.local');

        // the session cookie now skips the form (first-party: no consent)
        const a2 = await authParams();
        const again = await b.fetch(oidc.buildAuthorizationUrl(spa, { ...a2.params, state: a2.state }).href);
        assert.equal(again.status, 303);
        assert.ok(new URL(again.headers.get('location')).searchParams.get('code'));

        // refresh rotates the refresh token
        const refreshed = await oidc.refreshTokenGrant(spa, tokens.refresh_token);
        assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
        await jose.jwtVerify(refreshed.access_token, jwks, { issuer, audience: issuer, typ: 'at+jwt' });

        // revocation (RFC 7009) ends the grant
        await oidc.tokenRevocation(spa, refreshed.refresh_token);
        await assert.rejects(oidc.refreshTokenGrant(spa, refreshed.refresh_token), (e) => e.error === 'invalid_grant');
        const intro = await oidc.tokenIntrospection(svcConfig, refreshed.access_token);
        assert.equal(intro.active, false, 'access tokens of a revoked grant are inactive at introspection');
    });

    it('speaks English when asked with ui_locales', async () => {
        const a = await authParams({ ui_locales: 'en' });
        const r = await fetch(oidc.buildAuthorizationUrl(spa, { ...a.params, state: a.state }).href);
        const html = await r.text();
        assert.match(html, /<html lang="en">/);
        assert.match(html, /Sign in/);
    });

    it('issues client-credentials tokens that the API accepts and introspection describes', async () => {
        const t = await oidc.clientCredentialsGrant(svcConfig, { scope: 'ledger:read' });
        const at = await jose.jwtVerify(t.access_token, jwks, { issuer, audience: issuer, typ: 'at+jwt' });
        assert.equal(at.payload.sub, svc.client_id);
        assert.equal(at.payload.scope, 'ledger:read');
        const intro = await oidc.tokenIntrospection(svcConfig, t.access_token);
        assert.equal(intro.active, true);
        assert.equal(intro.client_id, svc.client_id);
        // the resource-server authenticator: authenticated (403 for a missing scope, not 401)
        const m = await srv.request('GET', '/metrics', { token: t.access_token });
        assert.equal(m.status, 403);
        const u = await srv.request('GET', '/oauth2/userinfo', { token: t.access_token });
        assert.equal(u.status, 403, 'userinfo needs openid');
        // revoking an access token makes it inactive at introspection
        await oidc.tokenRevocation(svcConfig, t.access_token);
        assert.equal((await oidc.tokenIntrospection(svcConfig, t.access_token)).active, false);
        // a scope the client does not hold
        await assert.rejects(oidc.clientCredentialsGrant(svcConfig, { scope: 'ledger:admin' }),
            (e) => e.error === 'invalid_scope');
    });

    it('issues RS256 ID tokens to clients registered for them', async () => {
        const c = adminJson(srv, ['clients', 'create', '--name', 'rs', '--redirect-uri', SPA_REDIRECT, '--grant',
            'authorization_code', '--scope', 'openid', '--id-token-alg', 'RS256']);
        const conf = await oidc.discovery(new URL(srv.url), c.client_id, c.client_secret,
            oidc.ClientSecretBasic(c.client_secret), insecure);
        const b = new Browser();
        const a = await authParams({ scope: 'openid' });
        const { r } = await login(b, srv.url, oidc.buildAuthorizationUrl(conf, { ...a.params, state: a.state, nonce: a.nonce }).href,
            'ana', PASSWORD);
        const tokens = await oidc.authorizationCodeGrant(conf, new URL(r.headers.get('location')), {
            pkceCodeVerifier: a.code_verifier, expectedState: a.state, expectedNonce: a.nonce,
        });
        const idt = await jose.jwtVerify(tokens.id_token, jwks, { issuer, audience: c.client_id });
        assert.equal(idt.protectedHeader.alg, 'RS256');
        assert.equal(tokens.refresh_token, undefined, 'no refresh_token grant, no refresh token');
    });

    it('authenticates private_key_jwt clients and rejects a replayed assertion', async () => {
        const { publicKey, privateKey } = await jose.generateKeyPair('ES256');
        const jwk = { ...(await jose.exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
        const c = adminJson(srv, ['clients', 'create', '--name', 'pkj', '--grant', 'client_credentials', '--scope',
            'ledger:read', '--auth-method', 'private_key_jwt', '--jwks', JSON.stringify({ keys: [jwk] })]);
        assert.equal(c.client_secret, undefined);
        const conf = await oidc.discovery(new URL(srv.url), c.client_id, undefined,
            oidc.PrivateKeyJwt({ key: privateKey, kid: 'k1' }), insecure);
        const t = await oidc.clientCredentialsGrant(conf, { scope: 'ledger:read' });
        assert.ok(t.access_token);
        // the same assertion twice: the second is a replay
        const now = Math.floor(Date.now() / 1000);
        const assertion = await new jose.SignJWT({ jti: 'fixed-jti-1' })
            .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
            .setIssuer(c.client_id).setSubject(c.client_id).setAudience(issuer)
            .setIssuedAt(now).setExpirationTime(now + 60).sign(privateKey);
        const body = new URLSearchParams({
            grant_type: 'client_credentials', client_assertion: assertion,
            client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        }).toString();
        const h = { 'content-type': 'application/x-www-form-urlencoded' };
        const first = await srv.request('POST', '/oauth2/token', { body, headers: h });
        assert.equal(first.status, 200, first.text);
        const second = await srv.request('POST', '/oauth2/token', { body, headers: h });
        assert.equal(second.status, 401);
        assert.equal(second.json.error, 'invalid_client');
        assert.match(second.json.error_description, /replay/);
        // signed by another key
        const other = await jose.generateKeyPair('ES256');
        const forged = await new jose.SignJWT({ jti: 'x2' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' })
            .setIssuer(c.client_id).setSubject(c.client_id).setAudience(issuer).setIssuedAt(now)
            .setExpirationTime(now + 60).sign(other.privateKey);
        const f = await srv.request('POST', '/oauth2/token', {
            headers: h,
            body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion: forged,
                client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' }).toString(),
        });
        assert.equal(f.status, 401);
    });

    describe('rules', () => {
        it('shows, never redirects, an unregistered redirect_uri or unknown client', async () => {
            const a = await authParams({ redirect_uri: 'https://evil.example/cb' });
            const r = await fetch(oidc.buildAuthorizationUrl(spa, { ...a.params, state: a.state }).href, { redirect: 'manual' });
            assert.equal(r.status, 400);
            assert.equal(r.headers.get('location'), null);
            assert.match(await r.text(), /redirect_uri/);
            const r2 = await fetch(`${srv.url}/oauth2/authorize?client_id=nope&response_type=code&redirect_uri=${encodeURIComponent(SPA_REDIRECT)}`, { redirect: 'manual' });
            assert.equal(r2.status, 400);
            assert.equal(r2.headers.get('location'), null);
            // a prefix of a registered URI is not that URI
            const a3 = await authParams({ redirect_uri: `${SPA_REDIRECT}/x` });
            const r3 = await fetch(oidc.buildAuthorizationUrl(spa, { ...a3.params }).href, { redirect: 'manual' });
            assert.equal(r3.status, 400);
        });

        async function authorizeError(extra, del = []) {
            const a = await authParams(extra);
            const u = oidc.buildAuthorizationUrl(spa, { ...a.params, state: 's1' });
            for (const k of del) u.searchParams.delete(k);
            const r = await fetch(u.href, { redirect: 'manual' });
            assert.equal(r.status, 303);
            const loc = new URL(r.headers.get('location'));
            assert.equal(loc.searchParams.get('state'), 's1');
            assert.equal(loc.searchParams.get('iss'), issuer);
            return loc.searchParams.get('error');
        }

        it('requires PKCE with S256 and response_type=code', async () => {
            assert.equal(await authorizeError({}, ['code_challenge', 'code_challenge_method']), 'invalid_request');
            assert.equal(await authorizeError({ code_challenge_method: 'plain' }), 'invalid_request');
            assert.equal(await authorizeError({}, ['code_challenge_method']), 'invalid_request');
            assert.equal(await authorizeError({ response_type: 'token' }), 'unsupported_response_type');
            assert.equal(await authorizeError({ scope: 'openid admin:everything' }), 'invalid_scope');
        });

        it('rejects a wrong code_verifier, a missing one, and a reused code (revoking what it issued)', async () => {
            const { a, loc } = await fullLogin();
            await assert.rejects(oidc.authorizationCodeGrant(spa, loc, { pkceCodeVerifier: oidc.randomPKCECodeVerifier(),
                expectedState: a.state, expectedNonce: a.nonce }), (e) => e.error === 'invalid_grant');
            const code = loc.searchParams.get('code');
            const raw = await srv.request('POST', '/oauth2/token', {
                headers: { 'content-type': 'application/x-www-form-urlencoded' },
                body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: SPA_REDIRECT,
                    client_id: 'boveda-web' }).toString(),
            });
            assert.equal(raw.status, 400);
            assert.equal(raw.json.error, 'invalid_request');
            const tokens = await oidc.authorizationCodeGrant(spa, loc, { pkceCodeVerifier: a.code_verifier,
                expectedState: a.state, expectedNonce: a.nonce });
            await assert.rejects(oidc.authorizationCodeGrant(spa, loc, { pkceCodeVerifier: a.code_verifier,
                expectedState: a.state, expectedNonce: a.nonce }), (e) => e.error === 'invalid_grant');
            await assert.rejects(oidc.refreshTokenGrant(spa, tokens.refresh_token), (e) => e.error === 'invalid_grant');
            assert.equal((await oidc.tokenIntrospection(svcConfig, tokens.access_token)).active, false);
        });

        it('revokes the whole family when an old refresh token comes back', async () => {
            const { a, loc } = await fullLogin();
            const t1 = await oidc.authorizationCodeGrant(spa, loc, { pkceCodeVerifier: a.code_verifier,
                expectedState: a.state, expectedNonce: a.nonce });
            const t2 = await oidc.refreshTokenGrant(spa, t1.refresh_token);
            await assert.rejects(oidc.refreshTokenGrant(spa, t1.refresh_token), (e) => e.error === 'invalid_grant');
            await assert.rejects(oidc.refreshTokenGrant(spa, t2.refresh_token), (e) => e.error === 'invalid_grant');
            assert.equal((await oidc.tokenIntrospection(svcConfig, t2.access_token)).active, false);
        });

        it('rejects an expired code and an expired refresh token', async () => {
            const { a, loc } = await fullLogin();
            sqlite(srv, 'UPDATE oauth_codes SET expires_at = 1 WHERE used_at IS NULL');
            await assert.rejects(oidc.authorizationCodeGrant(spa, loc, { pkceCodeVerifier: a.code_verifier,
                expectedState: a.state, expectedNonce: a.nonce }), (e) => e.error === 'invalid_grant');
            const f = await fullLogin();
            const t = await oidc.authorizationCodeGrant(spa, f.loc, { pkceCodeVerifier: f.a.code_verifier,
                expectedState: f.a.state, expectedNonce: f.a.nonce });
            sqlite(srv, 'UPDATE oauth_refresh_tokens SET expires_at = 1 WHERE used_at IS NULL');
            await assert.rejects(oidc.refreshTokenGrant(spa, t.refresh_token), (e) => e.error === 'invalid_grant');
        });

        it('rejects wrong client authentication', async () => {
            const h = { 'content-type': 'application/x-www-form-urlencoded' };
            const body = 'grant_type=client_credentials';
            const basic = (id, s) => `Basic ${Buffer.from(`${id}:${s}`).toString('base64')}`;
            const bad = await srv.request('POST', '/oauth2/token', { body, headers: { ...h, authorization: basic(svc.client_id, 'wrong') } });
            assert.equal(bad.status, 401);
            assert.equal(bad.json.error, 'invalid_client');
            assert.match(bad.headers.get('www-authenticate') ?? '', /^Basic/);
            // the right secret by the wrong (unregistered) method
            const post = await srv.request('POST', '/oauth2/token', {
                headers: h, body: `${body}&client_id=${svc.client_id}&client_secret=${svc.client_secret}` });
            assert.equal(post.status, 401);
            // two methods at once
            const both = await srv.request('POST', '/oauth2/token', {
                headers: { ...h, authorization: basic(svc.client_id, svc.client_secret) },
                body: `${body}&client_secret=${svc.client_secret}` });
            assert.equal(both.status, 400);
            // no authentication for a confidential client
            const none = await srv.request('POST', '/oauth2/token', { headers: h, body: `${body}&client_id=${svc.client_id}` });
            assert.equal(none.status, 401);
            // a public client may not use client_credentials, nor introspect
            const pub = await srv.request('POST', '/oauth2/token', { headers: h, body: `${body}&client_id=boveda-web` });
            assert.equal(pub.json.error, 'unauthorized_client');
            const pi = await srv.request('POST', '/oauth2/introspect', { headers: h, body: 'token=x&client_id=boveda-web' });
            assert.equal(pi.status, 401);
            // the password grant is off unless the client is flagged legacy
            const pw = await srv.request('POST', '/oauth2/token', { headers: h,
                body: `grant_type=password&username=demo&password=x&client_id=boveda-web` });
            assert.equal(pw.json.error, 'unauthorized_client');
        });

        it('accepts the password grant only for legacy first-party clients', async () => {
            const c = adminJson(srv, ['clients', 'create', '--name', 'legacy', '--grant', 'password', '--scope', 'openid profile',
                '--legacy-password']);
            const h = { 'content-type': 'application/x-www-form-urlencoded',
                authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}` };
            const ok = await srv.request('POST', '/oauth2/token', { headers: h,
                body: new URLSearchParams({ grant_type: 'password', username: 'ana', password: PASSWORD }).toString() });
            assert.equal(ok.status, 200, ok.text);
            assert.ok(ok.json.id_token);
            const r = srv.run(['admin', 'clients', 'create', '--name', 'x', '--grant', 'password', '--json']);
            assert.notEqual(r.code, 0, 'refused without --legacy-password');
        });

        it('refuses forged access tokens: alg none, HS256 with our public key, foreign key, garbage', async () => {
            const t = await oidc.clientCredentialsGrant(svcConfig, { scope: 'ledger:read' });
            const [h, p] = t.access_token.split('.');
            const header = JSON.parse(Buffer.from(h, 'base64url'));
            const payload = JSON.parse(Buffer.from(p, 'base64url'));
            const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
            const none = `${b64({ ...header, alg: 'none' })}.${p}.`;
            const keys = (await srv.request('GET', '/oauth2/jwks')).json.keys;
            const pub = keys.find((k) => k.kid === header.kid);
            const hs = await new jose.SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: header.kid })
                .sign(new TextEncoder().encode(JSON.stringify(pub)));
            const other = await jose.generateKeyPair('ES256');
            const foreign = await new jose.SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: header.kid })
                .sign(other.privateKey);
            const unknownKid = await new jose.SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'nope' })
                .sign(other.privateKey);
            const tampered = `${h}.${b64({ ...payload, scope: 'ledger:read ledger:write metrics:read' })}.${t.access_token.split('.')[2]}`;
            for (const tok of [none, hs, foreign, unknownKid, tampered, 'a.b.c']) {
                const r = await srv.request('GET', '/metrics', { token: tok });
                assert.equal(r.status, 401, tok);
                assert.match(r.headers.get('www-authenticate') ?? '', /invalid_token/);
                assert.equal((await oidc.tokenIntrospection(svcConfig, tok)).active, false);
            }
        });

        it('locks an account after N failures, with the same answer for unknown users', async () => {
            createUser(srv, 'victim');
            const a = await authParams();
            const url = oidc.buildAuthorizationUrl(spa, { ...a.params, state: a.state }).href;
            const attempt = async (username, password) => {
                const b = new Browser();
                const { r } = await login(b, srv.url, url, username, password);
                return { status: r.status, text: await r.text() };
            };
            const wrong = await attempt('victim', 'wrong password 1');
            const unknown = await attempt('nobody-here', 'wrong password 1');
            assert.equal(wrong.status, 401);
            assert.equal(unknown.status, 401);
            const msg = (t) => /class="err"[^>]*>([^<]+)</.exec(t)[1];
            assert.equal(msg(wrong.text), msg(unknown.text), 'no user enumeration');
            await attempt('victim', 'wrong password 2');
            await attempt('victim', 'wrong password 3');
            const locked = await attempt('victim', PASSWORD);
            assert.equal(locked.status, 429, 'the right password is refused while locked');
            // the unknown account locks the same way
            await attempt('nobody-here', 'x2');
            await attempt('nobody-here', 'x3');
            assert.equal((await attempt('nobody-here', 'x4')).status, 429);
            // persisted: the operator sees and clears it
            assert.equal(sqlite(srv, "SELECT failures FROM identity_throttle WHERE key = 'account:victim'"), '3');
            adminJson(srv, ['users', 'unlock', '--username', 'victim']);
            const ok = await attempt('victim', PASSWORD);
            assert.equal(ok.status, 303);
        });

        it('refuses the login form without the CSRF token or the session cookie', async () => {
            const a = await authParams();
            const url = oidc.buildAuthorizationUrl(spa, { ...a.params, state: a.state }).href;
            const b = new Browser();
            const html = await (await b.fetch(url)).text();
            const f = formFields(html);
            const noToken = await postForm(b, srv.url, { tx: f.tx, step: 'password', username: 'demo', password: PASSWORD });
            assert.equal(noToken.status, 403);
            const badToken = await postForm(b, srv.url, { ...f, csrf_token: 'x'.repeat(43), username: 'demo', password: PASSWORD });
            assert.equal(badToken.status, 403);
            const stranger = new Browser(); // another browser (no cookie) replaying the form
            const noCookie = await postForm(stranger, srv.url, { ...f, username: 'demo', password: PASSWORD });
            assert.equal(noCookie.status, 403);
            const ok = await postForm(b, srv.url, { ...f, username: 'demo', password: PASSWORD });
            assert.equal(ok.status, 303);
            const replay = await postForm(b, srv.url, { ...f, username: 'demo', password: PASSWORD });
            assert.equal(replay.status, 400, 'a finished login transaction cannot be replayed');
        });

        it('ends the session and its grants at RP-initiated logout', async () => {
            const { a, loc, b } = await fullLogin();
            const t = await oidc.authorizationCodeGrant(spa, loc, { pkceCodeVerifier: a.code_verifier,
                expectedState: a.state, expectedNonce: a.nonce });
            const end = oidc.buildEndSessionUrl(spa, { id_token_hint: t.id_token,
                post_logout_redirect_uri: 'http://localhost:5173/', state: 'bye' });
            const r = await b.fetch(end.href);
            assert.equal(r.status, 303);
            assert.equal(r.headers.get('location'), 'http://localhost:5173/?state=bye');
            await assert.rejects(oidc.refreshTokenGrant(spa, t.refresh_token), (e) => e.error === 'invalid_grant');
            // an unregistered post-logout URI is refused
            const bad = await fetch(oidc.buildEndSessionUrl(spa, { id_token_hint: t.id_token,
                post_logout_redirect_uri: 'https://evil.example/' }).href, { redirect: 'manual' });
            assert.equal(bad.status, 400);
        });
    });
});

describe('progressive login delays', () => {
    let srv;
    before(async () => {
        srv = await startServer({ env: { BOVEDA_LOGIN_FREE_FAILURES: '0', BOVEDA_LOGIN_DELAY_MS: '60000' } });
        adminJson(srv, ['demo-seed', '--password-stdin'], `${PASSWORD}\n`);
    });
    after(async () => {
        if (srv?.running) await srv.stop();
    });

    it('makes the next attempt wait after a failure, even with the right password', async () => {
        const spa = await oidc.discovery(new URL(srv.url), 'boveda-web', undefined, oidc.None(), insecure);
        const a = await authParams();
        const url = oidc.buildAuthorizationUrl(spa, { ...a.params, state: a.state }).href;
        const first = await login(new Browser(), srv.url, url, 'demo', 'not the password');
        assert.equal(first.r.status, 401);
        const second = await login(new Browser(), srv.url, url, 'demo', PASSWORD);
        assert.equal(second.r.status, 429);
        const ra = Number(second.r.headers.get('retry-after'));
        assert.ok(ra > 0 && ra <= 60, `retry-after ${ra}`);
    });
});
