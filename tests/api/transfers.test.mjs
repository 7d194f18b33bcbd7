// Customer transfers (issue 8), black box: create -> OTP by SMS (read back from the SMS
// fake) -> confirm -> the worker executes it against the builtin core -> success, the
// movement in both accounts and the notices to both parties (SMS fake and SMTP sink); the
// bad inputs (each with its status, problem type and field) and no money moved by them;
// idempotency, a code for transfer A on transfer B, another customer's resources, a new
// challenge, the list with its cursor and filter.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';

import { BIN, PROBLEM_BASE, randomToken, runBoveda, startServer } from './lib/server.mjs';
import { eventually, notifyEnv, startSmsFake } from './lib/smsfake.mjs';
import { startSmtpSink } from './lib/smtpsink.mjs';
import { adminJson, assertProblem, sqlite } from './lib/tools.mjs';

const PASSWORD = 'correct horse battery staple';
const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ANA_PHONE = '+34600111222';
const BOB_PHONE = '+34600333444';

/** A 16-digit account number with valid check digits that no account has. */
function unusedNumber() {
    const body = '99' + String(Date.now()).slice(-12).padStart(12, '0');
    for (let cd = 0; cd < 100; cd++) {
        const n = body + String(cd).padStart(2, '0');
        if (BigInt(n) % 97n === 1n) return n;
    }
    throw new Error('no check digits');
}

describe('customer transfers', () => {
    let srv;
    let sms;
    let sink;
    let ana;
    let bob;
    let anaId;
    let bobId;
    let ana1; // ana's checking account, funded 1000.00 EUR
    let ana2; // ana's savings, funded 1000.00 EUR (daily limit cases)
    let ana3; // ana's wallet, 50.00 EUR (insufficient funds)
    let anaUsd;
    let bob1;
    let bank; // the bank's settlement account
    let seq = 0;
    const key = () => `k-${Date.now()}-${++seq}`;

    const admin = (method, p, body, headers = {}) => srv.request(method, p, { body, headers, token: srv.adminToken });
    const open = async (body) => {
        const r = await admin('POST', '/v1/accounts', { holder_name: 'Holder', ...body });
        assert.equal(r.status, 201, r.text);
        return r.json;
    };
    const balance = async (id) => {
        const r = await admin('GET', `/v1/accounts/${id}`);
        assert.equal(r.status, 200, r.text);
        return r.json.balance;
    };
    const create = (token, body, k = key()) =>
        srv.request('POST', '/v1/me/transfers', { token, body, headers: k === null ? {} : { 'idempotency-key': k } });
    const confirm = (token, id, code) => srv.request('POST', `/v1/me/transfers/${id}/confirm`, { token, body: { code } });
    const get = (token, id) => srv.request('GET', `/v1/me/transfers/${id}`, { token });

    /** The newest code the SMS fake carried to `phone` after `before` requests. */
    async function codeFor(phone, before) {
        const reqs = await sms.waitFor((all) => all.slice(before).some((q) => q.to === phone && /\d{6}/.test(q.body)));
        const msg = reqs.slice(before).filter((q) => q.to === phone && /código|code/i.test(q.body)).at(-1);
        const code = /(\d{6})/.exec(msg.body)?.[1];
        assert.ok(code, `a code in the SMS: ${msg.body}`);
        return code;
    }

    /** Waits until every SMS challenge so far reached the SMS fake (so the next code read is
     * the next challenge's). */
    async function otpsSettled() {
        await eventually(() => {
            const sent = sms.requests.filter((q) => /código|code/i.test(q.body ?? '')).length;
            return sent === Number(sqlite(srv, "SELECT count(*) FROM mfa_challenges WHERE channel = 'sms'"));
        }, 20000, 'every OTP delivered');
    }

    /** Creates a pending transfer and returns it with the code sent by SMS. */
    async function pending(token, body, phone = ANA_PHONE) {
        await otpsSettled();
        const before = sms.requests.length;
        const r = await create(token, body);
        assert.equal(r.status, 201, r.text);
        assert.equal(r.json.status, 'pending_confirmation');
        return { t: r.json, code: await codeFor(phone, before) };
    }

    before(async () => {
        sms = await startSmsFake();
        sink = await startSmtpSink();
        srv = await startServer({
            env: {
                BOVEDA_MFA_LOGIN_POLICY: 'enrolled',
                BOVEDA_MFA_MAX_ATTEMPTS: '3',
                BOVEDA_MFA_MAX_CHALLENGES_15MIN: '100',
                BOVEDA_TRANSFER_MAX_AMOUNT: '500',
                BOVEDA_TRANSFER_DAILY_LIMIT: '800',
                ...notifyEnv({ smtp: { url: sink.url }, sms: { provider: 'webhook', url: sms.url } }),
            },
        });
        anaId = adminJson(srv, ['users', 'create', '--username', 'ana', '--email', 'ana@example.com', '--phone', ANA_PHONE,
            '--password-stdin'], `${PASSWORD}\n`).id;
        bobId = adminJson(srv, ['users', 'create', '--username', 'bob', '--email', 'bob@example.com', '--phone', BOB_PHONE,
            '--password-stdin'], `${PASSWORD}\n`).id;
        const client = adminJson(srv, ['clients', 'create', '--name', 'legacy', '--grant', 'password', '--scope',
            'openid banking:read banking:write', '--legacy-password']);
        const token = async (username) => {
            const r = await srv.request('POST', '/oauth2/token', {
                headers: {
                    'content-type': 'application/x-www-form-urlencoded',
                    authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
                },
                body: new URLSearchParams({ grant_type: 'password', username, password: PASSWORD,
                    scope: 'openid banking:read banking:write' }).toString(),
            });
            assert.equal(r.status, 200, r.text);
            return r.json.access_token;
        };
        ana = await token('ana');
        bob = await token('bob');

        bank = await open({ type: 'internal', currency: 'EUR', holder_name: 'Bank', allow_negative: true });
        ana1 = await open({ type: 'checking', currency: 'EUR', holder_name: 'Ana', customer_id: anaId });
        ana2 = await open({ type: 'savings', currency: 'EUR', holder_name: 'Ana', customer_id: anaId });
        ana3 = await open({ type: 'wallet', currency: 'EUR', holder_name: 'Ana', customer_id: anaId });
        anaUsd = await open({ type: 'checking', currency: 'USD', holder_name: 'Ana', customer_id: anaId });
        bob1 = await open({ type: 'checking', currency: 'EUR', holder_name: 'Bob', customer_id: bobId });
        for (const [acct, amount] of [[ana1, '1000.00'], [ana2, '1000.00'], [ana3, '50.00']]) {
            const f = await admin('POST', '/v1/ledger/transfers', { debit_account: bank.id, credit_account: acct.id,
                amount, currency: 'EUR', reference: `fund-${acct.id}` });
            assert.equal(f.status, 201, f.text);
        }
    });
    after(async () => {
        try {
            if (srv?.running) await srv.stop();
        } finally {
            await sms?.close();
            await sink?.close();
        }
    });

    it('creates, confirms with the SMS code and executes once; both parties are told', { timeout: 90000 }, async () => {
        const body = { from_account: ana1.id, to_account_number: bob1.number, amount: '125.50', currency: 'EUR',
            description: 'rent' };
        const k = key();
        const before = sms.requests.length;
        const r = await create(ana, body, k);
        assert.equal(r.status, 201, r.text);
        const t = r.json;
        assert.match(t.id, UUID7);
        assert.equal(t.status, 'pending_confirmation');
        assert.equal(t.stage, null);
        assert.equal(t.notification_status, 'none');
        assert.equal(t.amount, '125.50');
        assert.equal(t.currency, 'EUR');
        assert.equal(t.from_account, ana1.id);
        assert.equal(t.to_account_number, bob1.number);
        assert.equal(t.description, 'rent');
        assert.equal(t.challenge.channel, 'sms');
        assert.match(t.challenge.id, UUID7);
        assert.ok(Date.parse(t.challenge.expires_at) > Date.now());
        assert.ok(Date.parse(t.expires_at) - Date.now() > 14 * 60000, 'about 15 minutes to confirm');
        assert.equal(r.headers['cache-control'], 'no-store');
        const code = await codeFor(ANA_PHONE, before);

        // the same key and content: the same transfer; other content: refused
        const replay = await create(ana, body, k);
        assert.equal(replay.status, 201);
        assert.equal(replay.headers['idempotent-replayed'], 'true');
        assert.equal(replay.json.id, t.id);
        assert.equal(replay.json.challenge.id, t.challenge.id);
        assertProblem(await create(ana, { ...body, amount: '125.51' }, k), 422, 'idempotency-key-reused', 'Idempotency-Key');
        assert.equal(sqlite(srv, `SELECT count(*) FROM customer_transfers WHERE idem_key = '${k}'`), '1');

        // another customer sees nothing, even with the right code
        assertProblem(await get(bob, t.id), 404, 'not-found');
        assertProblem(await confirm(bob, t.id, code), 404, 'not-found');

        const c = await confirm(ana, t.id, code);
        assert.equal(c.status, 202, c.text);
        assert.equal(c.json.status, 'queued');
        assert.equal(c.json.challenge, undefined);
        assertProblem(await confirm(ana, t.id, code), 409, 'conflict');

        const done = await eventually(async () => {
            const g = await get(ana, t.id);
            assert.equal(g.status, 200, g.text);
            return g.json.status === 'success' ? g.json : null;
        }, 30000, 'the transfer succeeded');
        assert.equal(done.stage, 'success');
        assert.match(done.core_transfer_id, UUID7);
        assert.equal(done.failure, null);
        // published in the commit of the final state; `notified` once delivered
        assert.ok(['notify', 'notified'].includes(done.notification_status), done.notification_status);
        assert.ok(done.confirmed_at && done.completed_at);

        // exactly one core transfer under the reference, and the movement in both accounts
        const byRef = await admin('GET', `/v1/ledger/transfers?reference=${t.id}`);
        assert.equal(byRef.status, 200);
        assert.equal(byRef.json.items.length, 1);
        assert.equal(byRef.json.items[0].id, done.core_transfer_id);
        assert.equal(byRef.json.items[0].amount, '125.50');
        const mv = async (acct) => {
            const m = await admin('GET', `/v1/accounts/${acct.id}/movements`);
            assert.equal(m.status, 200, m.text);
            return m.json.items.find((x) => x.transfer_id === done.core_transfer_id);
        };
        assert.equal((await mv(ana1)).amount, '-125.50');
        assert.equal((await mv(bob1)).amount, '125.50');
        assert.equal(await balance(ana1.id), '874.50');
        assert.equal(await balance(bob1.id), '125.50');

        // the notices: SMS and e-mail to the sender and to the receiver
        await sms.waitFor((all) => all.some((q) => q.to === BOB_PHONE && /recibiste 125\.50 EUR/.test(q.body)) &&
            all.some((q) => q.to === ANA_PHONE && /enviaste 125\.50 EUR/.test(q.body)));
        const mails = await sink.waitFor((all) => all.some((m) => m.to.includes('bob@example.com')) &&
            all.some((m) => m.to.includes('ana@example.com') && /enviaste 125\.50 EUR/i.test(m.text)));
        const bobMail = mails.find((m) => m.to.includes('bob@example.com'));
        assert.match(bobMail.text, /recibiste 125\.50 EUR/i);
        assert.ok(bobMail.text.includes(bob1.number.slice(-4)) && !bobMail.text.includes(bob1.number), 'masked number');
        // every notice delivered: the transfer says `notified` (the sweeper checks every few seconds)
        await eventually(async () => (await get(ana, t.id)).json.notification_status === 'notified', 20000,
            'notification_status notified');

        // every step audited; the code nowhere
        const actions = sqlite(srv, `SELECT group_concat(action || ':' || outcome, ' ') FROM audit_log WHERE resource = 'customer_transfer:${t.id}' ORDER BY seq`);
        for (const a of ['transfers.transfer.create:success', 'transfers.transfer.confirm:success',
            'transfers.transfer.send:success', 'transfers.transfer.execute:success', 'transfers.transfer.confirm:denied']) {
            assert.ok(actions.includes(a), `${a} in ${actions}`);
        }
        assert.ok(!sqlite(srv, "SELECT group_concat(details, ' ') FROM audit_log WHERE action LIKE 'transfers.%'").includes(code));
    });

    it('rejects bad input with the right problem and moves no money', { timeout: 60000 }, async () => {
        const base = { from_account: ana1.id, to_account_number: bob1.number, amount: '10.00', currency: 'EUR' };
        const balances = async () => [await balance(ana1.id), await balance(ana2.id), await balance(ana3.id), await balance(bob1.id)];
        const b0 = await balances();
        const n0 = sqlite(srv, 'SELECT count(*) FROM customer_transfers');

        assertProblem(await create(ana, base, null), 400, 'invalid-request', 'Idempotency-Key');
        assertProblem(await create(ana, { ...base, amount: 'ten' }), 400, 'invalid-request', 'amount');
        assertProblem(await create(ana, { ...base, amount: '1.234' }), 422, 'invalid-amount', 'amount');
        assertProblem(await create(ana, { ...base, amount: '0.00' }), 422, 'invalid-amount', 'amount');
        assertProblem(await create(ana, { ...base, currency: 'ZZZ' }), 400, 'invalid-request', 'currency');
        assertProblem(await create(ana, { ...base, extra: 1 }), 400, 'invalid-request', 'extra');
        assertProblem(await create(ana, { ...base, from_account: bob1.id }), 404, 'not-found', 'from_account');
        assertProblem(await create(ana, { ...base, from_account: 'nope' }), 404, 'not-found', 'from_account');
        assertProblem(await create(ana, { ...base, to_account_number: '1234567890123456' }), 422, 'unknown-account', 'to_account_number');
        assertProblem(await create(ana, { ...base, to_account_number: unusedNumber() }), 422, 'unknown-account', 'to_account_number');
        // the bank's internal accounts are not destinations (and do not show that they exist)
        assertProblem(await create(ana, { ...base, to_account_number: bank.number }), 422, 'unknown-account', 'to_account_number');
        assertProblem(await create(ana, { ...base, to_account_number: ana1.number }), 422, 'same-account', 'to_account_number');
        assertProblem(await create(ana, { ...base, to_account_number: anaUsd.number }), 422, 'currency-mismatch', 'currency');
        assertProblem(await create(ana, { ...base, from_account: anaUsd.id, currency: 'USD' }), 422, 'currency-mismatch', 'currency');
        assertProblem(await create(ana, { ...base, amount: '500.01' }), 422, 'limit-exceeded', 'amount');
        assertProblem(await create(ana, { ...base, from_account: ana3.id, amount: '50.01' }), 422, 'insufficient-funds', 'amount');

        // the daily limit (800) counts today's transfers that are not failed or expired, pending ones too
        const first = await create(ana, { ...base, from_account: ana2.id, amount: '500.00' });
        assert.equal(first.status, 201, first.text);
        assertProblem(await create(ana, { ...base, from_account: ana2.id, amount: '300.01' }), 422, 'limit-exceeded', 'amount');
        const second = await create(ana, { ...base, from_account: ana2.id, amount: '300.00' });
        assert.equal(second.status, 201, second.text);
        assertProblem(await create(ana, { ...base, from_account: ana2.id, amount: '0.01' }), 422, 'limit-exceeded', 'amount');

        // only customers: the admin token is not one
        assertProblem(await create(srv.adminToken, base), 403, 'forbidden');
        assertProblem(await srv.request('GET', '/v1/me/transfers', { token: srv.adminToken }), 403, 'forbidden');

        assert.equal(sqlite(srv, 'SELECT count(*) FROM customer_transfers'), String(Number(n0) + 2));
        assert.deepEqual(await balances(), b0, 'no money moved');
    });

    it('refuses wrong codes, a code of another transfer and double confirmation', { timeout: 60000 }, async () => {
        const bBefore = [await balance(ana1.id), await balance(bob1.id)];
        const body = { from_account: ana1.id, to_account_number: bob1.number, amount: '1.00', currency: 'EUR' };
        const A = await pending(ana, body);
        const B = await pending(ana, { ...body, amount: '2.00' });
        assert.notEqual(A.t.challenge.id, B.t.challenge.id);

        // A's code never confirms B
        const cross = await confirm(ana, B.t.id, A.code);
        assertProblem(cross, 422, 'otp-invalid', 'code');
        assert.equal(cross.json.attempts_left, 2);
        const wrong = A.code === '000000' ? '000001' : '000000';
        const w = await confirm(ana, A.t.id, wrong);
        assertProblem(w, 422, 'otp-invalid', 'code');
        assert.equal(w.json.attempts_left, 2);
        assert.equal((await get(ana, A.t.id)).json.status, 'pending_confirmation');
        assert.equal((await get(ana, B.t.id)).json.status, 'pending_confirmation');
        assert.equal(sqlite(srv, `SELECT count(*) FROM audit_log WHERE action = 'transfers.transfer.confirm' AND outcome = 'invalid' AND resource IN ('customer_transfer:${A.t.id}', 'customer_transfer:${B.t.id}')`), '2');
        assertProblem(await confirm(ana, A.t.id, ''), 400, 'invalid-request', 'code');

        // B gets a new code; the old challenge is gone for B
        await otpsSettled();
        const before = sms.requests.length;
        const nc = await srv.request('POST', `/v1/me/transfers/${B.t.id}/challenge`, { token: ana });
        assert.equal(nc.status, 201, nc.text);
        assert.notEqual(nc.json.challenge.id, B.t.challenge.id);
        const bCode = await codeFor(ANA_PHONE, before);
        // the old code answers the new challenge no more (1 in 10^6 the fresh code is the same)
        const stale = await confirm(ana, B.t.id, B.code === bCode ? String((Number(bCode) + 1) % 1e6).padStart(6, '0') : B.code);
        assertProblem(stale, 422, 'otp-invalid', 'code');
        assert.equal(stale.json.attempts_left, 2, 'a fresh challenge with its own attempts');
        assertProblem(await srv.request('POST', `/v1/me/transfers/${B.t.id}/challenge`, { token: bob }), 404, 'not-found');

        const okA = await confirm(ana, A.t.id, A.code);
        assert.equal(okA.status, 202, okA.text);
        assertProblem(await confirm(ana, A.t.id, A.code), 409, 'conflict');
        assertProblem(await srv.request('POST', `/v1/me/transfers/${A.t.id}/challenge`, { token: ana }), 409, 'conflict');
        const okB = await confirm(ana, B.t.id, bCode);
        assert.equal(okB.status, 202, okB.text);
        for (const id of [A.t.id, B.t.id]) {
            await eventually(async () => (await get(ana, id)).json.status === 'success', 30000, `${id} succeeded`);
        }
        assert.equal(await balance(ana1.id), (Number(bBefore[0]) - 3).toFixed(2));
        assert.equal(await balance(bob1.id), (Number(bBefore[1]) + 3).toFixed(2));
        assertProblem(await get(ana, '01900000-0000-7000-8000-000000000000'), 404, 'not-found');
        assertProblem(await get(ana, 'not-a-uuid'), 404, 'not-found');
    });

    it('fails a transfer the core rejects at execution, and tells the sender', { timeout: 60000 }, async () => {
        const { t, code } = await pending(ana, { from_account: ana3.id, to_account_number: bob1.number, amount: '40.00', currency: 'EUR' });
        // the money leaves the account between the order and its execution
        const out = await admin('POST', '/v1/ledger/transfers', { debit_account: ana3.id, credit_account: bank.id,
            amount: '50.00', currency: 'EUR', reference: `drain-${t.id}` });
        assert.equal(out.status, 201, out.text);
        const bobBefore = await balance(bob1.id);
        const c = await confirm(ana, t.id, code);
        assert.equal(c.status, 202, c.text);
        const done = await eventually(async () => {
            const g = await get(ana, t.id);
            return g.json.status === 'fail' ? g.json : null;
        }, 30000, 'the transfer failed');
        assert.equal(done.stage, 'fail');
        assert.deepEqual(done.failure, { type: `${PROBLEM_BASE}insufficient-funds`, title: 'Insufficient funds' });
        assert.equal(done.core_transfer_id, null);
        assert.equal((await admin('GET', `/v1/ledger/transfers?reference=${t.id}`)).json.items.length, 0);
        assert.equal(await balance(ana3.id), '0.00');
        assert.equal(await balance(bob1.id), bobBefore);
        await sms.waitFor((all) => all.some((q) => q.to === ANA_PHONE && /transferencia de 40\.00 EUR.*no se realizó \(fondos insuficientes\)\. No se movió dinero/.test(q.body)));
        assert.equal(sqlite(srv, `SELECT count(*) FROM audit_log WHERE action = 'transfers.transfer.fail' AND resource = 'customer_transfer:${t.id}'`), '1');
    });

    it('expires a pending transfer on read once its window passed', { timeout: 30000 }, async () => {
        const { t, code } = await pending(ana, { from_account: ana1.id, to_account_number: bob1.number, amount: '3.00', currency: 'EUR' });
        sqlite(srv, `UPDATE customer_transfers SET confirm_by = 1 WHERE id = '${t.id}'`);
        const g = await get(ana, t.id);
        assert.equal(g.json.status, 'expired');
        assertProblem(await confirm(ana, t.id, code), 422, 'expired');
        assert.equal(sqlite(srv, `SELECT count(*) FROM audit_log WHERE action = 'transfers.transfer.expire' AND resource = 'customer_transfer:${t.id}'`), '1');
    });

    it('lists the customer\'s transfers newest first, with a cursor and a status filter', async () => {
        const all = await srv.request('GET', '/v1/me/transfers?limit=100', { token: ana });
        assert.equal(all.status, 200, all.text);
        const ids = all.json.items.map((x) => x.id);
        assert.deepEqual([...ids].sort().reverse(), ids, 'newest first');
        assert.equal(Number(sqlite(srv, `SELECT count(*) FROM customer_transfers WHERE user_id = '${anaId}'`)), ids.length);
        const p1 = await srv.request('GET', '/v1/me/transfers?limit=2', { token: ana });
        assert.deepEqual(p1.json.items.map((x) => x.id), ids.slice(0, 2));
        const p2 = await srv.request('GET', `/v1/me/transfers?limit=2&cursor=${p1.json.next_cursor}`, { token: ana });
        assert.deepEqual(p2.json.items.map((x) => x.id), ids.slice(2, 4));
        const ok = await srv.request('GET', '/v1/me/transfers?status=success&limit=100', { token: ana });
        assert.ok(ok.json.items.length >= 3 && ok.json.items.every((x) => x.status === 'success'));
        assertProblem(await srv.request('GET', '/v1/me/transfers?status=lost', { token: ana }), 400, 'invalid-request', 'status');
        const none = await srv.request('GET', '/v1/me/transfers', { token: bob });
        assert.deepEqual(none.json.items, []);
        assert.equal(none.json.next_cursor, null);
    });
});

/** `boveda worker --only transfers` with `env`: {logs, waitForLog(pred, ms), running, stop()}. */
function startWorker(env) {
    const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOVEDA_')));
    const child = spawn(BIN, ['worker', '--only', 'transfers'], { env: { ...childEnv, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    const w = { logs: [], stderr: '', running: true, waiters: [] };
    let partial = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
        w.stderr += chunk;
        partial += chunk;
        let nl;
        while ((nl = partial.indexOf('\n')) >= 0) {
            const line = partial.slice(0, nl);
            partial = partial.slice(nl + 1);
            try {
                w.logs.push(JSON.parse(line));
            } catch {
                /* not a log line */
            }
            w.waiters = w.waiters.filter((x) => !x());
        }
    });
    const closed = new Promise((resolve) => child.on('close', (code, signal) => {
        w.running = false;
        resolve({ code, signal });
    }));
    w.waitForLog = (pred, ms) => new Promise((resolve, reject) => {
        const check = () => {
            const hit = w.logs.find(pred);
            if (hit) {
                clearTimeout(t);
                resolve(hit);
            }
            return Boolean(hit);
        };
        const t = setTimeout(() => reject(new Error(`no matching worker log within ${ms} ms: ${w.stderr}`)), ms);
        if (!check()) w.waiters.push(check);
    });
    w.stop = async () => {
        child.kill('SIGTERM');
        const e = await closed;
        assert.equal(e.code, 0, `worker exit ${e.code} ${e.signal}: ${w.stderr.slice(-2000)}`);
        assert.ok(!/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/.test(w.stderr), w.stderr);
    };
    return w;
}

describe('transfers executed by `boveda worker` against `boveda core` over HTTP', () => {
    let core;
    let bank;
    let worker;
    let sms;
    const coreToken = randomToken(48);

    before(async () => {
        sms = await startSmsFake();
        core = await startServer({ args: ['core'], env: { BOVEDA_CORE_TOKEN: coreToken } });
        bank = await startServer({
            env: {
                BOVEDA_CORE: 'http',
                BOVEDA_CORE_URL: core.url,
                BOVEDA_CORE_TOKEN: coreToken,
                BOVEDA_SERVE_CONSUMERS: 'notify',
                ...notifyEnv({ sms: { provider: 'webhook', url: sms.url } }),
            },
        });
    });
    after(async () => {
        try {
            if (worker?.running) await worker.stop();
            if (bank?.running) await bank.stop();
            if (core?.running) await core.stop();
        } finally {
            await sms?.close();
        }
    });

    it('refuses to run the transfers consumer in a worker over the builtin core', () => {
        const r = runBoveda(['worker', '--only', 'transfers'], { env: { ...bank.env, BOVEDA_CORE: 'builtin' }, timeout: 20000 });
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /transfers consumer not started.*BOVEDA_CORE=http/);
    });

    it('serve leaves transfers to the worker, which executes them through the core', { timeout: 90000 }, async () => {
        const run = (args, input) => {
            const r = bank.run(['admin', ...args, '--json'], { input });
            assert.equal(r.code, 0, r.stderr);
            return JSON.parse(r.stdout.trim().split('\n').pop());
        };
        const carla = run(['users', 'create', '--username', 'carla', '--phone', '+34600555666', '--password-stdin'], `${PASSWORD}\n`);
        const dan = run(['users', 'create', '--username', 'dan', '--phone', '+34600777888', '--password-stdin'], `${PASSWORD}\n`);
        const client = run(['clients', 'create', '--name', 'legacy', '--grant', 'password', '--scope', 'openid banking:read banking:write', '--legacy-password']);
        const tok = await bank.request('POST', '/oauth2/token', {
            headers: {
                'content-type': 'application/x-www-form-urlencoded',
                authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
            },
            body: new URLSearchParams({ grant_type: 'password', username: 'carla', password: PASSWORD, scope: 'openid banking:read banking:write' }).toString(),
        });
        assert.equal(tok.status, 200, tok.text);
        const token = tok.json.access_token;
        const coreAdmin = (method, p, body) => core.request(method, p, { body, token: core.adminToken });
        const open = async (body) => {
            const r = await coreAdmin('POST', '/v1/accounts', { holder_name: 'Holder', currency: 'EUR', ...body });
            assert.equal(r.status, 201, r.text);
            return r.json;
        };
        const bankAcct = await open({ type: 'internal', allow_negative: true });
        const c1 = await open({ type: 'checking', customer_id: carla.id });
        const d1 = await open({ type: 'checking', customer_id: dan.id });
        assert.equal((await coreAdmin('POST', '/v1/ledger/transfers', { debit_account: bankAcct.id, credit_account: c1.id, amount: '100.00', currency: 'EUR', reference: 'fund-c1' })).status, 201);

        // `boveda worker` binds nothing (BOVEDA_HTTP_LISTEN stays set only because the
        // configuration refuses an empty one)
        worker = startWorker(bank.env);
        await worker.waitForLog((l) => l.msg === 'worker ready', 10000);
        assert.ok(!bank.logs.some((l) => l.msg === 'consumer started' && l.consumer === 'transfers'), 'serve does not run it');

        const before = sms.requests.length;
        const r = await bank.request('POST', '/v1/me/transfers', { token, headers: { 'idempotency-key': 'split-1' },
            body: { from_account: c1.id, to_account_number: d1.number, amount: '40.00', currency: 'EUR' } });
        assert.equal(r.status, 201, r.text);
        const msgs = await sms.waitFor((all) => all.slice(before).some((q) => q.to === '+34600555666'));
        const code = /(\d{6})/.exec(msgs.slice(before).find((q) => q.to === '+34600555666').body)[1];
        const c = await bank.request('POST', `/v1/me/transfers/${r.json.id}/confirm`, { token, body: { code } });
        assert.equal(c.status, 202, c.text);
        const done = await eventually(async () => {
            const g = await bank.request('GET', `/v1/me/transfers/${r.json.id}`, { token });
            return g.json.status === 'success' ? g.json : null;
        }, 30000, 'executed by the worker');
        const inCore = await coreAdmin('GET', `/v1/ledger/transfers?reference=${r.json.id}`);
        assert.equal(inCore.json.items.length, 1);
        assert.equal(inCore.json.items[0].id, done.core_transfer_id);
        assert.equal((await coreAdmin('GET', `/v1/accounts/${c1.id}`)).json.balance, '60.00');
        assert.equal((await coreAdmin('GET', `/v1/accounts/${d1.id}`)).json.balance, '40.00');
        await worker.waitForLog((l) => l.msg === 'transfer executed' && l.transfer === r.json.id, 5000);
        // the receiver is told by SMS (the bank's notify consumers deliver what the worker published)
        await sms.waitFor((all) => all.some((q) => q.to === '+34600777888' && q.body.includes('40.00')));
    });
});
