// An SMS provider fake on loopback for the notification tests. It speaks both shapes the
// SMS adapter supports: Twilio's REST API (POST /2010-04-01/Accounts/{sid}/Messages.json,
// form body To/From/Body, HTTP basic auth) and a JSON webhook (POST any path, body
// {"to","from","body","id"}). The test controls how it answers:
//
//   const sms = await startSmsFake({ account: 'AC1', token: 't0k' });
//   sms.url                       // 'http://127.0.0.1:PORT'
//   sms.mode = 'ok'               // 200 with a provider message id (default)
//   sms.mode = { status: 429, retryAfter: 1 }  // 429 with Retry-After: 1
//   sms.mode = { status: 500 }    // any status
//   sms.mode = 'hang'             // accept the request and never answer
//   sms.requests                  // [{shape, to, from, body, id, auth, at, answered}]
//   await sms.waitFor((reqs) => reqs.length >= 2)
//   await sms.close()
//
// Also the helpers the queue and notification tests share: runAsync (an asynchronous
// `boveda` run: the fakes live in the test process, a synchronous spawn would block them),
// notifyEnv (the settings pointing Bóveda at the fakes) and eventually (polling).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';

import { BIN } from './server.mjs';

export async function startSmsFake({ account = null, token = null } = {}) {
    const state = { mode: 'ok', requests: [], waiters: [], hung: new Set() };
    const server = http.createServer((req, res) => {
        let raw = '';
        req.setEncoding('utf8');
        req.on('data', (c) => {
            raw += c;
        });
        req.on('end', () => {
            const rec = { method: req.method, path: req.url, at: Date.now(), answered: null };
            const auth = req.headers.authorization ?? '';
            const twilio = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/.exec(req.url);
            if (twilio) {
                const f = new URLSearchParams(raw);
                Object.assign(rec, { shape: 'twilio', to: f.get('To'), from: f.get('From'), body: f.get('Body'), sid: twilio[1] });
                rec.auth = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString() : null;
                rec.contentType = req.headers['content-type'];
            } else {
                let j = {};
                try {
                    j = JSON.parse(raw);
                } catch {
                    j = {};
                }
                Object.assign(rec, { shape: 'webhook', to: j.to, from: j.from, body: j.body, id: j.id, auth });
                rec.contentType = req.headers['content-type'];
            }
            state.requests.push(rec);
            const mode = state.mode;
            const answer = (status, body, headers = {}) => {
                rec.answered = status;
                res.writeHead(status, { 'content-type': 'application/json', ...headers });
                res.end(JSON.stringify(body));
            };
            if (twilio && account !== null && rec.auth !== `${account}:${token}`) answer(401, { message: 'bad credentials' });
            else if (mode === 'hang') state.hung.add(res);
            else if (mode === 'ok') {
                const id = (twilio ? 'SM' : 'wh-') + randomBytes(8).toString('hex');
                rec.providerId = id;
                answer(twilio ? 201 : 200, twilio ? { sid: id, status: 'queued' } : { id, status: 'accepted' });
            } else {
                const headers = mode.retryAfter !== undefined ? { 'retry-after': String(mode.retryAfter) } : {};
                answer(mode.status, { message: 'fake failure' }, headers);
            }
            state.waiters = state.waiters.filter((w) => !w());
        });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
        url: `http://127.0.0.1:${server.address().port}`,
        get mode() {
            return state.mode;
        },
        set mode(m) {
            state.mode = m;
        },
        get requests() {
            return state.requests;
        },
        /** Resolves when pred(requests) holds; rejects after timeoutMs. */
        waitFor(pred, timeoutMs = 20000) {
            if (pred(state.requests)) return Promise.resolve(state.requests);
            return new Promise((resolve, reject) => {
                const t = setTimeout(() => reject(new Error(`smsfake: condition not met within ${timeoutMs} ms (${state.requests.length} requests)`)), timeoutMs);
                state.waiters.push(() => {
                    if (!pred(state.requests)) return false;
                    clearTimeout(t);
                    resolve(state.requests);
                    return true;
                });
            });
        },
        async close() {
            for (const r of state.hung) r.destroy();
            server.closeAllConnections?.();
            await new Promise((resolve) => server.close(resolve));
        },
    };
}

/** Runs `boveda <args>` with exactly the BOVEDA_* settings in env, without blocking the
 * event loop. Resolves {code, signal, stdout, stderr, json} (json: stdout parsed, or null). */
export function runAsync(env, args, { timeoutMs = 60000 } = {}) {
    const childEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BOVEDA_')) childEnv[k] = v;
    for (const [k, v] of Object.entries(env)) if (v !== undefined && v !== null) childEnv[k] = String(v);
    return new Promise((resolve, reject) => {
        const child = spawn(BIN, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (c) => {
            stdout += c;
        });
        child.stderr.setEncoding('utf8').on('data', (c) => {
            stderr += c;
        });
        const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        child.on('error', reject);
        child.on('close', (code, signal) => {
            clearTimeout(t);
            let json = null;
            try {
                json = JSON.parse(stdout.trim().split('\n').pop());
            } catch {
                json = null;
            }
            resolve({ code, signal, stdout, stderr, json });
        });
    });
}

/** Settings pointing the notification module at the fakes. */
export function notifyEnv({ smtp = null, smtpSecondary = null, sms = null, smsSecondary = null, extra = {} } = {}) {
    const env = { BOVEDA_NOTIFY_TIMEOUT_MS: '2000', BOVEDA_NOTIFY_VISIBILITY_S: '6', ...extra };
    if (smtp) {
        env.BOVEDA_SMTP_URL = smtp.url;
        env.BOVEDA_MAIL_FROM = 'bank@example.com';
        if (smtp.user) {
            env.BOVEDA_SMTP_USER = smtp.user;
            env.BOVEDA_SMTP_PASSWORD = smtp.pass;
        }
        if (smtp.starttls) env.BOVEDA_SMTP_STARTTLS = smtp.starttls;
        if (smtp.ca) env.BOVEDA_NOTIFY_CA_FILE = smtp.ca;
    }
    if (smtpSecondary) env.BOVEDA_SMTP_SECONDARY_URL = smtpSecondary.url;
    for (const [pre, s] of [['BOVEDA_SMS_', sms], ['BOVEDA_SMS_SECONDARY_', smsSecondary]]) {
        if (!s) continue;
        env[`${pre}PROVIDER`] = s.provider;
        env[`${pre}URL`] = s.provider === 'webhook' ? `${s.url}/hook` : s.url;
        env[`${pre}FROM`] = s.from ?? '+15550001111';
        if (s.account) env[`${pre}ACCOUNT`] = s.account;
        if (s.token) env[`${pre}TOKEN`] = s.token;
    }
    return env;
}

/** Polls fn() every 100 ms until it returns a truthy value; rejects after timeoutMs. */
export async function eventually(fn, timeoutMs = 20000, what = 'condition') {
    const end = Date.now() + timeoutMs;
    let last;
    for (;;) {
        last = await fn();
        if (last) return last;
        if (Date.now() > end) throw new Error(`${what} not met within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
    }
}
