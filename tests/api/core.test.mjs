// Black-box tests of `boveda core` (issue 8, docs/core-contract.md): the core contract under
// /core/v1 with its bearer token, the back-office ledger routes for the admin token, no
// customer-facing routes, start-up validation, the transfer deadline, and fault injection
// (503 without effect; crash after commit, then the restarted core holds the transfer once).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { randomToken, runBoveda, startServer } from './lib/server.mjs';
import { assertProblem } from './lib/tools.mjs';

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const UNKNOWN = '01900000-0000-7000-8000-000000000000';
const CUSTOMER = '01900000-0000-7000-8000-0000000000c1';

let seq = 0;
const ref = (p = 'core') => `${p}-${process.pid}-${Date.now()}-${++seq}`;

/** A started `boveda core` with helpers for the admin back office and the core contract. */
async function startCore(env = {}) {
    const coreToken = randomToken(48);
    const srv = await startServer({ args: ['core'], env: { BOVEDA_CORE_TOKEN: coreToken, ...env } });
    srv.coreToken = coreToken;
    srv.core = (method, path, body) => srv.request(method, path, { body, token: srv.coreToken });
    srv.admin = (method, path, body) => srv.request(method, path, { body, token: srv.adminToken });
    srv.open = async (body) => {
        const r = await srv.admin('POST', '/v1/accounts', { currency: 'USD', holder_name: 'Holder', ...body });
        assert.equal(r.status, 201, r.text);
        return r.json;
    };
    srv.fund = async (id, amount) => {
        if (!srv.bank) srv.bank = await srv.open({ type: 'internal', holder_name: 'Bank', allow_negative: true });
        const r = await srv.admin('POST', '/v1/ledger/transfers', {
            debit_account: srv.bank.id, credit_account: id, amount, currency: 'USD', reference: ref('fund'),
        });
        assert.equal(r.status, 201, r.text);
    };
    srv.balance = async (id) => {
        const r = await srv.admin('GET', `/v1/accounts/${id}`);
        assert.equal(r.status, 200, r.text);
        return r.json.balance;
    };
    // what the back office (not the contract) says exists under a reference
    srv.byReference = async (reference) => {
        const r = await srv.admin('GET', `/v1/ledger/transfers?reference=${encodeURIComponent(reference)}`);
        assert.equal(r.status, 200, r.text);
        return r.json.items;
    };
    return srv;
}

describe('boveda core: start-up', () => {
    it('refuses a missing or short BOVEDA_CORE_TOKEN with one line naming it', () => {
        for (const token of [undefined, '', 'x'.repeat(31)]) {
            const r = runBoveda(['core'], {
                env: { BOVEDA_DATA_DIR: '/nonexistent/never-created', BOVEDA_CORE_TOKEN: token, BOVEDA_HTTP_LISTEN: '127.0.0.1:0' },
            });
            assert.equal(r.code, 2, r.stderr);
            const lines = r.stderr.trim().split('\n');
            assert.equal(lines.length, 1, r.stderr);
            assert.match(lines[0], /BOVEDA_CORE_TOKEN/);
        }
    });

    it('refuses unknown or malformed BOVEDA_CORE_FAULTS', () => {
        for (const faults of ['colour=blue', 'error_rate=1.5', 'timeout_rate=0.5', 'error_rate=0.1234567']) {
            const r = runBoveda(['core'], {
                env: { BOVEDA_DATA_DIR: '/nonexistent/never-created', BOVEDA_CORE_TOKEN: randomToken(40), BOVEDA_CORE_FAULTS: faults },
            });
            assert.equal(r.code, 2, r.stderr);
            assert.match(r.stderr, /BOVEDA_CORE_FAULTS/);
        }
    });

    it('documents itself in boveda help core', () => {
        const r = runBoveda(['help', 'core']);
        assert.equal(r.code, 0);
        assert.match(r.stdout, /core contract/);
    });
});

describe('boveda core: the contract', () => {
    let srv, a1, a2, poor;

    before(async () => {
        srv = await startCore();
        a1 = await srv.open({ type: 'checking', holder_name: 'Ana', customer_id: CUSTOMER });
        a2 = await srv.open({ type: 'savings', holder_name: 'Ana', customer_id: CUSTOMER });
        poor = await srv.open({ type: 'checking', holder_name: 'Pablo' });
        await srv.fund(a1.id, '1000.00');
    });
    after(async () => {
        if (srv?.running) await srv.stop();
    });

    it('requires the core token (401 without or with a wrong one), and the right scope', async () => {
        const path = `/core/v1/accounts/${a1.id}`;
        let r = await srv.request('GET', path);
        assertProblem(r, 401, 'unauthenticated');
        r = await srv.request('GET', path, { token: randomToken(48) });
        assertProblem(r, 401, 'unauthenticated');
        r = await srv.request('GET', path, { token: srv.coreToken.slice(0, 47) + (srv.coreToken[47] === 'a' ? 'b' : 'a') });
        assertProblem(r, 401, 'unauthenticated');
        r = await srv.request('POST', '/core/v1/transfers', { body: { reference: 'x' } });
        assertProblem(r, 401, 'unauthenticated');
        r = await srv.core('GET', path);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('cache-control'), 'no-store');
        // the core token is not a back-office credential
        r = await srv.core('GET', `/v1/accounts/${a1.id}`);
        assertProblem(r, 403, 'forbidden');
        r = await srv.core('GET', '/metrics');
        assertProblem(r, 403, 'forbidden');
    });

    it('serves probes and metrics, and nothing customer-facing', async () => {
        assert.equal((await srv.request('GET', '/healthz')).status, 200);
        assert.equal((await srv.request('GET', '/readyz')).status, 200);
        const m = await srv.admin('GET', '/metrics');
        assert.equal(m.status, 200);
        assert.match(m.text, /boveda_core_faults_injected_total\{fault="error"\} 0/);
        for (const [method, path] of [['GET', '/v1/me'], ['POST', '/oauth2/token'], ['GET', '/.well-known/openid-configuration'],
            ['GET', '/v1/me/transfers']]) {
            const r = await srv.request(method, path, { token: srv.adminToken });
            assertProblem(r, 404, 'no-such-route');
        }
    });

    it('lists the accounts of a customer, oldest first', async () => {
        let r = await srv.core('GET', `/core/v1/customers/${CUSTOMER}/accounts`);
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json.items.map((a) => a.id), [a1.id, a2.id]);
        assert.equal(r.json.items[0].balance, '1000.00');
        assert.equal(r.json.items[0].customer_id, CUSTOMER);
        r = await srv.core('GET', `/core/v1/customers/${UNKNOWN}/accounts`);
        assert.equal(r.status, 200);
        assert.deepEqual(r.json.items, []);
        r = await srv.core('GET', '/core/v1/customers/not-a-uuid/accounts');
        assertProblem(r, 400, 'invalid-request', 'customer_id');
    });

    it('gets an account by id and by number', async () => {
        let r = await srv.core('GET', `/core/v1/accounts/${a2.id}`);
        assert.equal(r.status, 200);
        assert.equal(r.json.number, a2.number);
        assert.equal(r.json.type, 'savings');
        assert.equal(r.json.available, '0.00');
        r = await srv.core('GET', `/core/v1/accounts?number=${a1.number}`);
        assert.equal(r.status, 200);
        assert.equal(r.json.id, a1.id);
        r = await srv.core('GET', `/core/v1/accounts/${UNKNOWN}`);
        assertProblem(r, 404, 'not-found');
        r = await srv.core('GET', '/core/v1/accounts?number=1234');
        assertProblem(r, 400, 'invalid-request', 'number');
        r = await srv.core('GET', '/core/v1/accounts');
        assertProblem(r, 400, 'invalid-request', 'number');
        // a well-formed number (check digits valid) that no account has
        let n = a1.number.slice(0, 14) === '00000000000000' ? '00000000000001' : '00000000000000';
        const check = String(98n - ((BigInt(n) * 100n) % 97n)).padStart(2, '0');
        n += check;
        r = await srv.core('GET', `/core/v1/accounts?number=${n}`);
        assertProblem(r, 404, 'not-found');
    });

    it('executes a transfer once: 201, replay 200 with the same id, other content 422', async () => {
        const reference = ref('exec');
        const body = { reference, debit_account: a1.id, credit_account: a2.id, amount: '125.50', currency: 'USD',
            description: 'to savings' };
        let r = await srv.core('POST', '/core/v1/transfers', body);
        assert.equal(r.status, 201, r.text);
        assert.match(r.json.id, UUID7);
        assert.equal(r.json.reference, reference);
        assert.equal(r.json.status, 'posted');
        assert.equal(r.json.amount, '125.50');
        assert.equal(r.json.posted_amount, '125.50');
        assert.equal(r.json.description, 'to savings');
        const id = r.json.id;
        r = await srv.core('POST', '/core/v1/transfers', body);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.id, id);
        assert.equal(r.headers.get('idempotent-replayed'), 'true');
        r = await srv.core('POST', '/core/v1/transfers', { ...body, amount: '125.51' });
        assertProblem(r, 422, 'idempotency-key-reused', 'reference');
        assert.equal(await srv.balance(a1.id), '874.50');
        assert.equal(await srv.balance(a2.id), '125.50');
        assert.equal((await srv.byReference(reference)).length, 1);
        // lookup
        r = await srv.core('GET', `/core/v1/transfers?reference=${encodeURIComponent(reference)}`);
        assert.equal(r.status, 200);
        assert.equal(r.json.id, id);
        assert.equal(r.headers.get('idempotent-replayed'), null);
        r = await srv.core('GET', `/core/v1/transfers?reference=${ref('never')}`);
        assertProblem(r, 404, 'not-found');
        r = await srv.core('GET', '/core/v1/transfers');
        assertProblem(r, 400, 'invalid-request', 'reference');
    });

    it('rejects transfers with the ledger codes and moves nothing', async () => {
        const before1 = await srv.balance(a1.id);
        const base = { debit_account: a1.id, credit_account: a2.id, amount: '1.00', currency: 'USD' };
        const cases = [
            [{ ...base, debit_account: poor.id }, 422, 'insufficient-funds'],
            [{ ...base, amount: '100000.00' }, 422, 'insufficient-funds'],
            [{ ...base, credit_account: UNKNOWN }, 422, 'unknown-account'],
            [{ ...base, credit_account: a1.id }, 422, 'same-account'],
            [{ ...base, currency: 'EUR' }, 422, 'currency-mismatch', 'currency'],
            [{ ...base, amount: '1.001' }, 422, 'invalid-amount', 'amount'],
            [{ ...base, amount: '0' }, 422, 'invalid-amount', 'amount'],
            [{ ...base, amount: '-1.00' }, 422, 'invalid-amount', 'amount'],
            [{ ...base, amount: 1 }, 400, 'invalid-request', 'amount'],
            [{ ...base, currency: 'XXX' }, 400, 'invalid-request', 'currency'],
            [{ ...base, deadline: 'tomorrow' }, 400, 'invalid-request', 'deadline'],
            [{ ...base, extra: 1 }, 400, 'invalid-request', 'extra'],
        ];
        for (const [body, status, slug, field] of cases) {
            const reference = ref('bad');
            const r = await srv.core('POST', '/core/v1/transfers', { reference, ...body });
            assertProblem(r, status, slug, field);
            assert.deepEqual(await srv.byReference(reference), []);
        }
        const r = await srv.core('POST', '/core/v1/transfers', base);
        assertProblem(r, 400, 'invalid-request', 'reference');
        assert.equal(await srv.balance(a1.id), before1);
    });

    it('refuses a transfer whose deadline passed (422 expired) and moves nothing', async () => {
        const before1 = await srv.balance(a1.id);
        const reference = ref('late');
        const body = { reference, debit_account: a1.id, credit_account: a2.id, amount: '5.00', currency: 'USD',
            deadline: new Date(Date.now() - 1000).toISOString() };
        let r = await srv.core('POST', '/core/v1/transfers', body);
        assertProblem(r, 422, 'expired', 'deadline');
        r = await srv.core('GET', `/core/v1/transfers?reference=${reference}`);
        assertProblem(r, 404, 'not-found');
        assert.equal(await srv.balance(a1.id), before1);
        // a future deadline executes
        r = await srv.core('POST', '/core/v1/transfers', { ...body, deadline: new Date(Date.now() + 60000).toISOString() });
        assert.equal(r.status, 201, r.text);
        const id = r.json.id;
        // once it exists, a late retry is answered as a replay (nothing new moves)
        r = await srv.core('POST', '/core/v1/transfers', { ...body, deadline: new Date(Date.now() - 1000).toISOString() });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.id, id);
        assert.equal((await srv.byReference(reference)).length, 1);
    });

    it('serves movements (newest first, cursor) and statements', async () => {
        const acct = await srv.open({ type: 'checking', holder_name: 'Mov', customer_id: CUSTOMER });
        await srv.fund(acct.id, '50.00');
        const start = new Date(Date.now() - 1000).toISOString();
        for (const amount of ['1.00', '2.00', '3.00']) {
            const r = await srv.core('POST', '/core/v1/transfers', { reference: ref('mv'), debit_account: acct.id,
                credit_account: a2.id, amount, currency: 'USD', description: `pay ${amount}` });
            assert.equal(r.status, 201, r.text);
        }
        let r = await srv.core('GET', `/core/v1/accounts/${acct.id}/movements?limit=2`);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.account_id, acct.id);
        assert.equal(r.json.currency, 'USD');
        assert.deepEqual(r.json.items.map((m) => m.amount), ['-3.00', '-2.00']);
        assert.equal(r.json.items[0].counterparty.id, a2.id);
        assert.equal(r.json.items[0].counterparty.number, a2.number);
        assert.equal(r.json.items[0].description, 'pay 3.00');
        assert.equal(r.json.items[0].balance_after, '44.00');
        assert.equal(typeof r.json.next_cursor, 'string');
        r = await srv.core('GET', `/core/v1/accounts/${acct.id}/movements?limit=2&cursor=${r.json.next_cursor}`);
        assert.deepEqual(r.json.items.map((m) => m.amount), ['-1.00', '50.00']);
        assert.equal(r.json.next_cursor, null);
        r = await srv.core('GET', `/core/v1/accounts/${UNKNOWN}/movements`);
        assertProblem(r, 404, 'not-found');
        r = await srv.core('GET', `/core/v1/accounts/${acct.id}/movements?limit=0`);
        assertProblem(r, 400, 'invalid-request', 'limit');
        r = await srv.core('GET', `/core/v1/accounts/${acct.id}/movements?cursor=abc`);
        assertProblem(r, 400, 'invalid-request', 'cursor');

        const to = new Date(Date.now() + 60000).toISOString();
        r = await srv.core('GET', `/core/v1/accounts/${acct.id}/statement?from=${start}&to=${to}`);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.account.id, acct.id);
        assert.equal(r.json.opening_balance, '0.00');
        assert.equal(r.json.closing_balance, '44.00');
        assert.equal(r.json.total_credits, '50.00');
        assert.equal(r.json.total_debits, '6.00');
        assert.equal(r.json.count, 4);
        assert.deepEqual(r.json.movements.map((m) => m.amount), ['50.00', '-1.00', '-2.00', '-3.00']);
        r = await srv.core('GET', `/core/v1/accounts/${acct.id}/statement?from=${to}&to=${start}`);
        assertProblem(r, 400, 'invalid-request');
        r = await srv.core('GET', `/core/v1/accounts/${acct.id}/statement`);
        assertProblem(r, 400, 'invalid-request', 'from');
        r = await srv.core('GET', `/core/v1/accounts/${UNKNOWN}/statement?from=${start}&to=${to}`);
        assertProblem(r, 404, 'not-found');
    });
});

describe('boveda core: faults', () => {
    it('error_rate=1: every execute and lookup answers 503 and nothing moves', async () => {
        const srv = await startCore({ BOVEDA_CORE_FAULTS: 'seed=3,error_rate=1' });
        try {
            const a = await srv.open({ type: 'checking', holder_name: 'A' });
            const b = await srv.open({ type: 'checking', holder_name: 'B' });
            await srv.fund(a.id, '10.00');
            const reference = ref('err');
            let r = await srv.core('POST', '/core/v1/transfers', { reference, debit_account: a.id, credit_account: b.id,
                amount: '1.00', currency: 'USD' });
            assertProblem(r, 503, 'unavailable');
            r = await srv.core('GET', `/core/v1/transfers?reference=${reference}`);
            assertProblem(r, 503, 'unavailable');
            assert.deepEqual(await srv.byReference(reference), []);
            assert.equal(await srv.balance(a.id), '10.00');
            const m = await srv.admin('GET', '/metrics');
            assert.match(m.text, /boveda_core_faults_injected_total\{fault="error"\} 2/);
            const warned = srv.logs.filter((l) => l.msg === 'fault injected' && l.fault === 'error');
            assert.equal(warned.length, 2);
            assert.ok(warned.every((l) => l.level === 'warn'));
        } finally {
            await srv.stop();
        }
    });

    it('crash_after_commit_rate=1: the core dies before replying; after restart the transfer exists once', async () => {
        const srv = await startCore({ BOVEDA_CORE_FAULTS: 'crash_after_commit_rate=1' });
        try {
            const a = await srv.open({ type: 'checking', holder_name: 'A' });
            const b = await srv.open({ type: 'checking', holder_name: 'B' });
            await srv.fund(a.id, '10.00');
            const reference = ref('crash');
            const body = { reference, debit_account: a.id, credit_account: b.id, amount: '4.00', currency: 'USD' };
            await assert.rejects(srv.core('POST', '/core/v1/transfers', body)); // the connection just closes
            // the child is unref'd: keep the event loop alive with a timer while it dies
            for (let i = 0; i < 500 && srv.exit === null; i++) await new Promise((r) => setTimeout(r, 20));
            const exit = srv.exit;
            assert.notEqual(exit, null, 'the core did not die');
            assert.equal(exit.code, 137);
            assert.ok(srv.logs.some((l) => l.msg === 'fault injected' && l.fault === 'crash_after_commit' && l.level === 'warn'));

            srv.env.BOVEDA_CORE_FAULTS = '';
            await srv.restart();
            let r = await srv.core('GET', `/core/v1/transfers?reference=${reference}`);
            assert.equal(r.status, 200, r.text);
            const id = r.json.id;
            assert.deepEqual((await srv.byReference(reference)).map((t) => t.id), [id]);
            assert.equal(await srv.balance(a.id), '6.00');
            assert.equal(await srv.balance(b.id), '4.00');
            // the caller's retry after reconciliation is a replay, not a second movement
            r = await srv.core('POST', '/core/v1/transfers', body);
            assert.equal(r.status, 200, r.text);
            assert.equal(r.json.id, id);
            assert.equal(await srv.balance(b.id), '4.00');
            const v = srv.run(['admin', 'ledger', 'verify']);
            assert.equal(v.code, 0, v.stdout + v.stderr);
        } finally {
            if (srv.running) await srv.stop();
        }
    });
});
