// Signs the demo customer in as the SPA would — the hosted login (password, then the
// one-time code the bank sent to the demo inbox), authorization code + PKCE with the public
// client `boveda-web` — and prints the access token, for trying the customer API with curl:
//
//   TOKEN=$(node scripts/demo-token.mjs)
//   curl -s -H "Authorization: Bearer $TOKEN" http://localhost:8080/v1/me/summary
//
// Options: --url BASE (default http://localhost:8080), --data DIR (default demo-data).
// Only for the demo (it reads the password and the inbox from the demo's data directory).
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const opt = (name, def) => {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const base = opt('--url', 'http://localhost:8080').replace(/\/$/, '');
const data = opt('--data', 'demo-data');
const REDIRECT = 'http://localhost:5173/callback';
const b64url = (buf) => buf.toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const fail = (msg) => {
    console.error(`demo-token: ${msg}`);
    process.exit(1);
};

const password = fs.readFileSync(path.join(data, 'demo-password'), 'utf8').trim();
const inboxFile = path.join(data, 'inbox.log');
const inboxSize = () => (fs.existsSync(inboxFile) ? fs.statSync(inboxFile).size : 0);

const jar = new Map();
async function browse(url, init = {}) {
    const headers = { ...(init.headers ?? {}) };
    if (jar.size > 0) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const sc of r.headers.getSetCookie?.() ?? []) {
        const pair = sc.split(';')[0];
        const eq = pair.indexOf('=');
        jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return r;
}
const hidden = (html) => {
    const out = {};
    for (const m of html.matchAll(/<input[^>]* name="([a-z_]+)" value="([^"]*)"/g)) out[m[1]] = m[2];
    return out;
};
const post = (fields) => browse(`${base}/oauth2/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
});

const verifier = b64url(randomBytes(32));
const authorize = new URL(`${base}/oauth2/authorize`);
for (const [k, v] of Object.entries({
    response_type: 'code', client_id: 'boveda-web', redirect_uri: REDIRECT,
    scope: 'openid profile banking:read banking:write', state: b64url(randomBytes(16)), nonce: b64url(randomBytes(16)),
    code_challenge: b64url(createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256',
})) authorize.searchParams.set(k, v);

const page = await browse(authorize.href);
if (page.status !== 200) fail(`the login page answered ${page.status}: is the demo running at ${base}?`);
const sent = inboxSize();
let r = await post({ ...hidden(await page.text()), username: 'demo', password });
if (r.status === 200) { // the second step: the code the bank sent to the demo inbox
    const fields = hidden(await r.text());
    let code = null;
    for (let i = 0; i < 100 && code === null; i++) {
        await new Promise((res) => setTimeout(res, 100));
        const fresh = fs.existsSync(inboxFile) ? fs.readFileSync(inboxFile, 'utf8').slice(sent) : '';
        code = /(?:c[oó]digo es|code is) (\d{4,6})/.exec(fresh)?.[1] ?? null;
    }
    if (code === null) fail(`no one-time code arrived in ${inboxFile}`);
    r = await post({ ...fields, code });
}
if (r.status !== 303) fail(`the login answered ${r.status}`);
const loc = new URL(r.headers.get('location'));
const code = loc.searchParams.get('code');
if (!code) fail(`no authorization code: ${loc.search}`);
const t = await fetch(`${base}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_id: 'boveda-web',
        code_verifier: verifier }).toString(),
});
const tok = await t.json();
if (t.status !== 200) fail(`the token endpoint answered ${t.status}: ${JSON.stringify(tok)}`);
process.stdout.write(`${tok.access_token}\n`);
