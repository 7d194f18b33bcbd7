// Exactly-once chaos test (issue 8). Customer transfers go through the bank (`boveda serve`:
// API, OTPs, notifications), a separate transfer worker (`boveda worker --only transfers`)
// and a separate core (`boveda core`, its own database) over the http core adapter, while
// the worker and the core are killed with SIGKILL at random moments and the core injects
// delays, 503s, timeouts (the transfer committed, the answer late) and crashes after commit.
// At the end every transfer must be SUCCESS or FAIL, the core must hold exactly one transfer
// per SUCCESS and none per FAIL (by reference, and by the money on every account), the
// core's ledger invariants must hold, and every final state must have been notified.
//
// BOVEDA_CHAOS_TRANSFERS (default 1000) and BOVEDA_CHAOS_SEED change the run.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { BIN, randomToken, runBoveda, startServer } from './lib/server.mjs';

function startWorker(env) {
    const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOVEDA_')));
    const w = { running: false, child: null, stderr: '' };
    w.start = () => {
        const child = spawn(BIN, ['worker', '--only', 'transfers'], { env: { ...childEnv, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
        w.child = child;
        w.running = true;
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (c) => { w.stderr += c; });
        w.closed = new Promise((resolve) => child.on('close', () => { w.running = false; resolve(); }));
    };
    w.kill = async () => { w.child.kill('SIGKILL'); await w.closed; };
    w.restart = async () => { w.start(); };
    w.start();
    return w;
}
import { eventually, notifyEnv, startSmsFake } from './lib/smsfake.mjs';

const N = Number(process.env.BOVEDA_CHAOS_TRANSFERS || 1000);
const CUSTOMERS = 20;
const PER_CUSTOMER = Math.ceil(N / CUSTOMERS);
const AMOUNT = 10; // USD per transfer
const MIN_KILLS = 20;
let seed = Number(process.env.BOVEDA_CHAOS_SEED || Date.now() % 100000);
function rand() {
    // mulberry32: a reproducible schedule of kills for a given seed
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('exactly-once transfers under chaos', { timeout: 10 * 60 * 1000 }, () => {
    let core;
    let bank;
    let worker;
    let sms;
    const coreToken = randomToken(48);
    const customers = []; // {id, username, phone, token, account, number}
    const transfers = []; // {id, customer}
    let kills = 0;

    async function coreReq(method, path, body) {
        for (;;) {
            try {
                const r = await core.request(method, path, { token: coreToken, body });
                if (r.status < 500) return r;
            } catch { /* killed */ }
            await sleep(50);
        }
    }

    before(async () => {
        console.log(`chaos seed ${seed}`);
        core = await startServer({
            args: ['core'],
            env: {
                BOVEDA_CORE_TOKEN: coreToken,
                BOVEDA_CORE_FAULTS: `seed=${seed},delay_ms=30,delay_rate=0.1,error_rate=0.03,timeout_rate=0.03,timeout_ms=1500,crash_after_commit_rate=0.01`,
            },
        });
        sms = await startSmsFake();
        bank = await startServer({
            env: {
                BOVEDA_CORE: 'http',
                BOVEDA_CORE_URL: core.url,
                BOVEDA_CORE_TOKEN: coreToken,
                BOVEDA_CORE_TIMEOUT_MS: '1000',
                BOVEDA_SERVE_CONSUMERS: 'notify',
                BOVEDA_MFA_LOGIN_POLICY: 'enrolled',
                BOVEDA_MFA_MAX_CHALLENGES_15MIN: '1000',
                BOVEDA_TRANSFER_MAX_RETRIES: '8',
                BOVEDA_TRANSFER_BACKOFF_MS: '100',
                BOVEDA_TRANSFER_DAILY_LIMIT: '1000000',
                BOVEDA_WORKER_QUEUE_LIMIT: '100000',
                ...notifyEnv({ sms: { provider: 'webhook', url: sms.url }, extra: { BOVEDA_SMS_RATE: '5000', BOVEDA_NOTIFY_CONCURRENCY: '8' } }),
            },
        });
        worker = startWorker(bank.env);

        // customers in the bank, their accounts in the core
        const client = bank.run(['admin', 'clients', 'create', '--name', 'chaos', '--grant', 'password', '--scope',
            'openid banking:read banking:write', '--legacy-password', '--json']);
        assert.equal(client.code, 0, client.stderr);
        const legacy = JSON.parse(client.stdout);
        const adminReq = (method, path, body, key) => core.request(method, path, {
            token: core.adminToken, body, headers: key ? { 'idempotency-key': key } : {},
        });
        const bankCash = await adminReq('POST', '/v1/accounts',
            { type: 'internal', currency: 'USD', holder_name: 'Caja', allow_negative: true }, 'cash');
        assert.equal(bankCash.status, 201, bankCash.text);
        for (let i = 0; i < CUSTOMERS; i++) {
            const username = `chaos${i}`;
            const phone = `+3461000${String(i).padStart(4, '0')}`;
            const password = `Chaos-pass-${i}-${randomToken(8)}`;
            const u = bank.run(['admin', 'users', 'create', '--username', username, '--email', `${username}@example.test`,
                '--phone', phone, '--password-stdin', '--json'], { input: `${password}\n` });
            assert.equal(u.code, 0, u.stderr);
            const user = JSON.parse(u.stdout);
            const acct = await adminReq('POST', '/v1/accounts', {
                type: 'checking', currency: 'USD', holder_name: `Cliente ${i}`, customer_id: user.id,
            }, `acct-${i}`);
            assert.equal(acct.status, 201, acct.text);
            // every fifth customer cannot pay for all their transfers: some must FAIL in the core
            const funds = i % 5 === 0 ? (PER_CUSTOMER - 5) * AMOUNT : PER_CUSTOMER * AMOUNT + 100;
            const f = await adminReq('POST', '/v1/ledger/transfers', {
                debit_account: bankCash.json.id, credit_account: acct.json.id, amount: `${funds}.00`,
                currency: 'USD', reference: `fund-${i}`, description: 'Fondos',
            });
            assert.equal(f.status, 201, f.text);
            const t = await bank.request('POST', '/oauth2/token', {
                headers: {
                    'content-type': 'application/x-www-form-urlencoded',
                    authorization: `Basic ${Buffer.from(`${legacy.client_id}:${legacy.client_secret}`).toString('base64')}`,
                },
                body: new URLSearchParams({ grant_type: 'password', username, password,
                    scope: 'openid banking:read banking:write' }).toString(),
            });
            assert.equal(t.status, 200, t.text);
            customers.push({ id: user.id, username, phone, token: t.json.access_token, account: acct.json.id,
                number: acct.json.number, funds });
        }
    });

    after(async () => {
        for (const s of [worker, bank, core]) if (s?.running) await s.kill();
        await sms?.close();
    });

    // The OTP of the newest SMS to `phone` that arrived after `seen` messages to it.
    async function nextCode(phone, seen) {
        let code = null;
        await eventually(() => {
            const mine = sms.requests.filter((r) => r.to === phone);
            if (mine.length <= seen) return false;
            const hits = mine.slice(seen).map((x) => /(?:c[oó]digo es|code is) (\d{4,6})/.exec(x.body)).filter(Boolean);
            code = hits.length ? hits.at(-1)[1] : null;
            return code !== null;
        }, 30000, `an OTP SMS to ${phone}`);
        return code;
    }

    async function runCustomer(c, peerNumbers) {
        for (let k = 0; k < PER_CUSTOMER && transfers.length < N; k++) {
            const seen = sms.requests.filter((r) => r.to === c.phone).length;
            const to = peerNumbers[(k + 1) % peerNumbers.length];
            let r;
            for (;;) {
                r = await bank.request('POST', '/v1/me/transfers', {
                    token: c.token,
                    headers: { 'idempotency-key': `chaos-${c.username}-${k}` },
                    body: { from_account: c.account, to_account_number: to, amount: `${AMOUNT}.00`, currency: 'USD',
                        description: `chaos ${k}` },
                });
                if (r.status < 500) break;
                await sleep(100);
            }
            if (r.status === 422 && r.json.type.endsWith('insufficient-funds')) continue;
            assert.equal(r.status, 201, r.text);
            assert.equal(r.json.status, 'pending_confirmation');
            const code = await nextCode(c.phone, seen);
            const conf = await bank.request('POST', `/v1/me/transfers/${r.json.id}/confirm`, {
                token: c.token, body: { code },
            });
            assert.equal(conf.status, 202, conf.text);
            transfers.push({ id: r.json.id, customer: c });
        }
    }

    // Kills the worker or the core at random moments, restarting each shortly after; also
    // restarts the core when an injected crash-after-commit took it down.
    async function chaos(stop) {
        while (!stop.done || kills < MIN_KILLS) {
            await sleep(200 + Math.floor(rand() * 800));
            const victim = rand() < 0.5 ? worker : core;
            if (victim.running) {
                await victim.kill();
                kills++;
            }
            await sleep(50 + Math.floor(rand() * 300));
            for (const s of [worker, core]) if (!s.running) await s.restart();
        }
    }

    // Until the checks start: the core keeps crashing after commits on its own (the injected
    // fault); bring it (and the worker) back whenever that happens.
    async function keepAlive(stop) {
        while (!stop.done) {
            for (const s of [worker, core]) if (!s.running) await s.restart();
            await sleep(100);
        }
    }

    it('executes every confirmed transfer exactly once while processes die', async () => {
        const stop = { done: false };
        const chaosRun = chaos(stop);
        // internal transfers between the chaos customers, to another customer's account
        const numbers = customers.map((c) => c.number);
        try {
            await Promise.all(customers.map((c, i) => runCustomer(c, numbers.filter((_, j) => j !== i))));
        } finally {
            stop.done = true;
        }
        await chaosRun;
        const alive = { done: false };
        const aliveRun = keepAlive(alive);
        assert.ok(kills >= MIN_KILLS, `only ${kills} kills`);

        // every transfer reaches a final state
        const final = new Map();
        const diagnose = () => {
            const q = (sql) => spawnSync('sqlite3', [path.join(bank.dataDir, 'boveda.db'), sql], { encoding: 'utf8' }).stdout;
            console.log(`not final: ${q("SELECT status, stage, attempts, sends, last_error, count(*) FROM customer_transfers WHERE status NOT IN ('success','fail') GROUP BY 1,2,3,4,5")}`);
            console.log(`transfers queue: ${q("SELECT count(*), min(visible_at), max(receive_count) FROM queue_messages WHERE queue = 'transfers'")}`);
            console.log(`worker running: ${worker.running}, core running: ${core.running}; worker stderr tail:\n${worker.stderr.split('\n').slice(-15).join('\n')}`);
        };
        await eventually(async () => {
            for (const t of transfers) {
                if (final.has(t.id)) continue;
                const r = await bank.request('GET', `/v1/me/transfers/${t.id}`, { token: t.customer.token });
                assert.equal(r.status, 200, r.text);
                if (r.json.status === 'success' || r.json.status === 'fail') final.set(t.id, r.json);
            }
            return final.size === transfers.length;
        }, 180000, 'every transfer final').catch((e) => {
            diagnose();
            throw e;
        });

        alive.done = true;
        await aliveRun;
        for (const s of [worker, core]) if (!s.running) await s.restart();

        // the core holds exactly one transfer per SUCCESS and none per FAIL
        const spent = new Map();
        const received = new Map();
        let ok = 0;
        let failed = 0;
        for (const t of transfers) {
            const st = final.get(t.id);
            const r = await coreReq('GET', `/core/v1/transfers?reference=${encodeURIComponent(t.id)}`);
            if (st.status === 'success') {
                ok++;
                assert.equal(r.status, 200, `SUCCESS ${t.id} without a core transfer: ${r.text}`);
                assert.equal(r.json.id, st.core_transfer_id);
                assert.equal(r.json.debit_account, t.customer.account);
                spent.set(t.customer.account, (spent.get(t.customer.account) ?? 0) + AMOUNT);
                received.set(r.json.credit_account, (received.get(r.json.credit_account) ?? 0) + AMOUNT);
            } else {
                failed++;
                assert.equal(r.status, 404, `FAIL ${t.id} has a core transfer: ${r.text}`);
            }
        }
        console.log(`chaos: ${transfers.length} transfers, ${ok} success, ${failed} fail, ${kills} kills`);
        assert.ok(ok > 0, 'no transfer succeeded');
        // no money moved beyond the successes: balance = funds - spent + received, for everyone
        for (const c of customers) {
            const r = await core.request('GET', `/v1/accounts/${c.account}`, { token: core.adminToken });
            assert.equal(r.status, 200, r.text);
            const expected = c.funds - (spent.get(c.account) ?? 0) + (received.get(c.account) ?? 0);
            assert.equal(r.json.balance, `${expected}.00`, `balance of ${c.username}`);
        }

        // every final state was notified
        await eventually(async () => {
            for (const t of transfers) {
                const r = await bank.request('GET', `/v1/me/transfers/${t.id}`, { token: t.customer.token });
                if (r.json.notification_status !== 'notified') return false;
            }
            return true;
        }, 120000, 'every final state notified');

        // the core's ledger invariants
        await core.stop();
        const v = runBoveda(['admin', 'ledger', 'verify'], { env: core.env });
        assert.equal(v.code, 0, v.stdout + v.stderr);
    });
});
