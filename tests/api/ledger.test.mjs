// Black-box tests of the ledger (issue 4): every route, every rejection (status, problem
// type, and balances unchanged), holds, reversals, batches, idempotency, movements,
// balances at a time, JSON and CSV statements, and `boveda admin ledger verify`.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { PROBLEM_BASE, startServer } from './lib/server.mjs';

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const UNKNOWN = '01900000-0000-7000-8000-000000000000';

function assertProblem(r, status, slug, field) {
    assert.equal(r.status, status, `status (body: ${r.text})`);
    assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(r.json.type, PROBLEM_BASE + slug);
    if (field !== undefined) assert.equal(r.json.field, field);
}

// ISO 7064 MOD 97-10: the 16-digit number is 1 mod 97
function numberValid(n) {
    if (!/^[0-9]{16}$/.test(n)) return false;
    return BigInt(n) % 97n === 1n;
}

describe('ledger API', () => {
    let srv;
    let seq = 0;
    const ref = (p = 'r') => `${p}-${Date.now()}-${++seq}`;
    const req = (method, path, body, headers = {}) =>
        srv.request(method, path, { body, headers, token: srv.adminToken });
    const open = async (body) => {
        const r = await req('POST', '/v1/accounts', { holder_name: 'Holder', ...body });
        assert.equal(r.status, 201, r.text);
        return r.json;
    };
    const transfer = (body, headers) => req('POST', '/v1/ledger/transfers', { currency: 'USD', ...body }, headers);
    const balance = async (id) => {
        const r = await req('GET', `/v1/accounts/${id}`);
        assert.equal(r.status, 200, r.text);
        return { balance: r.json.balance, available: r.json.available };
    };

    let bank, alice, bob, euro;

    before(async () => {
        srv = await startServer();
        bank = await open({ type: 'internal', currency: 'USD', holder_name: 'Bank settlement', allow_negative: true });
        alice = await open({ type: 'checking', currency: 'USD', holder_name: 'Alice' });
        bob = await open({ type: 'savings', currency: 'USD', holder_name: 'Bob' });
        euro = await open({ type: 'wallet', currency: 'EUR', holder_name: 'Eve' });
        const r = await transfer({ debit_account: bank.id, credit_account: alice.id, amount: '1000.00', reference: ref('seed') });
        assert.equal(r.status, 201, r.text);
    });
    after(async () => {
        if (srv?.running) await srv.stop();
    });

    describe('accounts', () => {
        it('opens an account with a UUIDv7 id and a check-digit number', async () => {
            const a = await open({ type: 'checking', currency: 'KWD', holder_name: 'Nour', overdraft_limit: '5.250' });
            assert.match(a.id, UUID7);
            assert.ok(numberValid(a.number), a.number);
            assert.equal(a.type, 'checking');
            assert.equal(a.currency, 'KWD');
            assert.equal(a.status, 'active');
            assert.equal(a.holder_name, 'Nour');
            assert.equal(a.overdraft_limit, '5.250');
            assert.equal(a.balance, '0.000');
            assert.equal(a.available, '0.000');
            assert.equal(a.allow_negative, false);
            const g = await req('GET', `/v1/accounts/${a.id}`);
            assert.equal(g.status, 200);
            assert.deepEqual(g.json, a);
            assert.equal(g.headers.get('cache-control'), 'no-store');
            const jpy = await open({ type: 'wallet', currency: 'JPY' });
            assert.equal(jpy.balance, '0');
        });

        it('rejects bad account requests naming the field', async () => {
            const cases = [
                [{ type: 'checking', currency: 'XXX', holder_name: 'x' }, 400, 'invalid-request', 'currency'],
                [{ type: 'loan', currency: 'USD', holder_name: 'x' }, 400, 'invalid-request', 'type'],
                [{ currency: 'USD', holder_name: 'x' }, 400, 'invalid-request', 'type'],
                [{ type: 'checking', currency: 'USD' }, 400, 'invalid-request', 'holder_name'],
                [{ type: 'checking', currency: 'USD', holder_name: 'x', allow_negative: true }, 400, 'invalid-request', 'allow_negative'],
                [{ type: 'checking', currency: 'USD', holder_name: 'x', overdraft_limit: '1.001' }, 422, 'invalid-amount', 'overdraft_limit'],
                [{ type: 'checking', currency: 'USD', holder_name: 'x', overdraft_limit: 'lots' }, 400, 'invalid-request', 'overdraft_limit'],
                [{ type: 'checking', currency: 'USD', holder_name: 'x', customer_id: 'abc' }, 400, 'invalid-request', 'customer_id'],
                [{ type: 'checking', currency: 'USD', holder_name: 'x', color: 'red' }, 400, 'invalid-request', 'color'],
            ];
            for (const [body, status, slug, field] of cases) {
                const r = await req('POST', '/v1/accounts', body);
                assertProblem(r, status, slug, field);
            }
        });

        it('replays an account opening with the same Idempotency-Key', async () => {
            const key = ref('open');
            const body = { type: 'checking', currency: 'USD', holder_name: 'Idem' };
            const a = await req('POST', '/v1/accounts', body, { 'idempotency-key': key });
            const b = await req('POST', '/v1/accounts', body, { 'idempotency-key': key });
            assert.equal(a.status, 201);
            assert.equal(b.status, 201);
            assert.equal(b.json.id, a.json.id);
            const c = await req('POST', '/v1/accounts', { ...body, holder_name: 'Other' }, { 'idempotency-key': key });
            assertProblem(c, 422, 'idempotency-key-reused');
        });

        it('404 for an unknown or malformed account in the path', async () => {
            for (const p of [`/v1/accounts/${UNKNOWN}`, '/v1/accounts/nope', `/v1/accounts/${UNKNOWN}/movements`,
                `/v1/accounts/${UNKNOWN}/balance`, `/v1/accounts/${UNKNOWN}/statement?from=2020-01-01&to=2030-01-01`]) {
                assertProblem(await req('GET', p), 404, 'not-found');
            }
        });

        it('requires a credential and the ledger scopes', async () => {
            const r = await srv.request('GET', `/v1/accounts/${alice.id}`);
            assertProblem(r, 401, 'unauthenticated');
            const w = await srv.request('POST', '/v1/ledger/transfers', { body: {}, token: 'wrong-token' });
            assert.equal(w.status, 401);
        });

        it('freezes and closes accounts (PATCH)', async () => {
            const a = await open({ type: 'checking', currency: 'USD' });
            const f = await req('PATCH', `/v1/accounts/${a.id}`, { status: 'frozen' });
            assert.equal(f.status, 200);
            assert.equal(f.json.status, 'frozen');
            const t = await transfer({ debit_account: alice.id, credit_account: a.id, amount: '1', reference: ref() });
            assertProblem(t, 422, 'account-frozen');
            assert.equal((await req('PATCH', `/v1/accounts/${a.id}`, { status: 'closed' })).json.status, 'closed');
            const t2 = await transfer({ debit_account: alice.id, credit_account: a.id, amount: '1', reference: ref() });
            assertProblem(t2, 422, 'account-closed');
            assertProblem(await req('PATCH', `/v1/accounts/${a.id}`, { status: 'active' }), 422, 'account-closed');
            assertProblem(await req('PATCH', `/v1/accounts/${a.id}`, { status: 'asleep' }), 400, 'invalid-request', 'status');
            // closing needs a zero balance
            assertProblem(await req('PATCH', `/v1/accounts/${alice.id}`, { status: 'closed' }), 409, 'conflict');
        });
    });

    describe('transfers', () => {
        it('moves money with a posted transfer', async () => {
            const before = [await balance(alice.id), await balance(bob.id)];
            const r = await transfer({ debit_account: alice.id, credit_account: bob.id, amount: '10.5',
                reference: ref(), description: 'Dinner' });
            assert.equal(r.status, 201, r.text);
            assert.match(r.json.id, UUID7);
            assert.equal(r.json.status, 'posted');
            assert.equal(r.json.amount, '10.50');
            assert.equal(r.json.currency, 'USD');
            assert.equal(r.json.description, 'Dinner');
            const afterBal = [await balance(alice.id), await balance(bob.id)];
            assert.equal(Number(afterBal[0].balance) * 100, Math.round(Number(before[0].balance) * 100) - 1050);
            assert.equal(Math.round(Number(afterBal[1].balance) * 100), Math.round(Number(before[1].balance) * 100) + 1050);
            const g = await req('GET', `/v1/ledger/transfers/${r.json.id}`);
            assert.equal(g.status, 200);
            assert.deepEqual(g.json, r.json);
            const l = await req('GET', `/v1/ledger/transfers?reference=${encodeURIComponent(r.json.reference)}`);
            assert.equal(l.status, 200);
            assert.deepEqual(l.json.items, [r.json]);
            const none = await req('GET', '/v1/ledger/transfers?reference=never-used');
            assert.deepEqual(none.json.items, []);
            assertProblem(await req('GET', '/v1/ledger/transfers'), 400, 'invalid-request', 'reference');
            assertProblem(await req('GET', `/v1/ledger/transfers/${UNKNOWN}`), 404, 'not-found');
        });

        it('rejects with stable problem types and leaves balances unchanged', async () => {
            const b0 = [await balance(alice.id), await balance(bob.id), await balance(euro.id)];
            const base = { debit_account: alice.id, credit_account: bob.id, amount: '1.00' };
            const cases = [
                [{ ...base, amount: '1000000.00' }, 422, 'insufficient-funds'],
                [{ ...base, credit_account: alice.id }, 422, 'same-account'],
                [{ ...base, credit_account: euro.id }, 422, 'currency-mismatch'],
                [{ ...base, currency: 'EUR' }, 422, 'currency-mismatch'],
                [{ ...base, amount: '0' }, 422, 'invalid-amount', 'amount'],
                [{ ...base, amount: '-1.00' }, 422, 'invalid-amount', 'amount'],
                [{ ...base, amount: '1.001' }, 422, 'invalid-amount', 'amount'],
                [{ ...base, amount: '92233720368547758.08' }, 422, 'invalid-amount', 'amount'],
                [{ ...base, amount: '1e3' }, 400, 'invalid-request', 'amount'],
                [{ ...base, amount: 5 }, 400, 'invalid-request', 'amount'],
                [{ ...base, currency: 'ABC' }, 400, 'invalid-request', 'currency'],
                [{ ...base, credit_account: UNKNOWN }, 422, 'unknown-account'],
                [{ ...base, debit_account: 'not-an-id' }, 422, 'unknown-account'],
                [{ ...base, debit_account: undefined }, 400, 'invalid-request', 'debit_account'],
                [{ ...base, expires_at: '2030-01-01T00:00:00Z' }, 400, 'invalid-request', 'expires_at'],
                [{ ...base, pending: true, expires_at: 'tomorrow' }, 400, 'invalid-request', 'expires_at'],
                [{ ...base, pending: true, expires_at: '2001-01-01T00:00:00Z' }, 422, 'expired'],
                [{ ...base, surprise: 1 }, 400, 'invalid-request', 'surprise'],
            ];
            for (const [body, status, slug, field] of cases) {
                const r = await transfer({ reference: ref('bad'), ...body });
                assertProblem(r, status, slug, field);
            }
            // no reference and no Idempotency-Key
            assertProblem(await req('POST', '/v1/ledger/transfers', { ...base, currency: 'USD' }), 400, 'invalid-request', 'reference');
            assertProblem(await transfer({ ...base, reference: 'a' }, { 'idempotency-key': 'b' }), 400, 'invalid-request', 'reference');
            const malformed = await srv.request('POST', '/v1/ledger/transfers', {
                body: '{"debit_account":', headers: { 'content-type': 'application/json' }, token: srv.adminToken });
            assertProblem(malformed, 400, 'malformed-json');
            const b1 = [await balance(alice.id), await balance(bob.id), await balance(euro.id)];
            assert.deepEqual(b1, b0);
        });

        it('replays with the same Idempotency-Key and rejects it with other content', async () => {
            const key = ref('idem');
            const body = { debit_account: alice.id, credit_account: bob.id, amount: '2.00' };
            const b0 = await balance(alice.id);
            const first = await transfer(body, { 'idempotency-key': key });
            assert.equal(first.status, 201);
            assert.equal(first.json.reference, key);
            const again = await transfer(body, { 'idempotency-key': key });
            assert.equal(again.status, 201);
            assert.deepEqual(again.json, first.json);
            assert.equal(again.headers.get('idempotent-replayed'), 'true');
            // the reference in the body is the same key
            const viaRef = await transfer({ ...body, reference: key });
            assert.deepEqual(viaRef.json, first.json);
            const other = await transfer({ ...body, amount: '3.00' }, { 'idempotency-key': key });
            assertProblem(other, 422, 'idempotency-key-reused');
            assert.equal(Math.round(Number((await balance(alice.id)).balance) * 100),
                Math.round(Number(b0.balance) * 100) - 200);
            assertProblem(await transfer(body, { 'idempotency-key': 'k'.repeat(129) }), 400, 'invalid-request');
        });
    });

    describe('holds', () => {
        it('reserves, posts partially, and releases the rest', async () => {
            const a = await open({ type: 'wallet', currency: 'USD' });
            await transfer({ debit_account: bank.id, credit_account: a.id, amount: '50.00', reference: ref() });
            const h = await transfer({ debit_account: a.id, credit_account: bob.id, amount: '30.00', pending: true, reference: ref('hold') });
            assert.equal(h.status, 201, h.text);
            assert.equal(h.json.status, 'pending');
            assert.deepEqual(await balance(a.id), { balance: '50.00', available: '20.00' });
            assertProblem(await transfer({ debit_account: a.id, credit_account: bob.id, amount: '20.01', reference: ref() }),
                422, 'insufficient-funds');
            assertProblem(await req('POST', `/v1/ledger/transfers/${h.json.id}/post`, { amount: '30.01' }), 422, 'invalid-amount');
            assertProblem(await req('POST', `/v1/ledger/transfers/${h.json.id}/post`, { amount: '1.001' }), 422, 'invalid-amount');
            const p = await req('POST', `/v1/ledger/transfers/${h.json.id}/post`, { amount: '12.00' });
            assert.equal(p.status, 200, p.text);
            assert.equal(p.json.status, 'posted');
            assert.equal(p.json.posted_amount, '12.00');
            assert.deepEqual(await balance(a.id), { balance: '38.00', available: '38.00' });
            assertProblem(await req('POST', `/v1/ledger/transfers/${h.json.id}/post`), 422, 'invalid-transfer-state');
            assertProblem(await req('POST', `/v1/ledger/transfers/${h.json.id}/void`), 422, 'invalid-transfer-state');
            assertProblem(await req('POST', `/v1/ledger/transfers/${UNKNOWN}/post`), 404, 'not-found');
            assertProblem(await req('POST', `/v1/ledger/transfers/${UNKNOWN}/void`), 404, 'not-found');
        });

        it('posts in full, voids, and retries with the same Idempotency-Key', async () => {
            const h1 = await transfer({ debit_account: alice.id, credit_account: bob.id, amount: '5.00', pending: true, reference: ref() });
            const h2 = await transfer({ debit_account: alice.id, credit_account: bob.id, amount: '6.00', pending: true, reference: ref() });
            const key = ref('post');
            const p = await req('POST', `/v1/ledger/transfers/${h1.json.id}/post`, undefined, { 'idempotency-key': key });
            assert.equal(p.status, 200, p.text);
            assert.equal(p.json.posted_amount, '5.00');
            const p2 = await req('POST', `/v1/ledger/transfers/${h1.json.id}/post`, undefined, { 'idempotency-key': key });
            assert.equal(p2.status, 200);
            assert.deepEqual(p2.json, p.json);
            const v = await req('POST', `/v1/ledger/transfers/${h2.json.id}/void`);
            assert.equal(v.status, 200);
            assert.equal(v.json.status, 'voided');
            assertProblem(await req('POST', `/v1/ledger/transfers/${h2.json.id}/post`), 422, 'invalid-transfer-state');
            assertProblem(await req('POST', `/v1/ledger/transfers/${h2.json.id}/reversal`), 422, 'invalid-transfer-state');
        });

        it('expires at its deadline and releases the funds', async () => {
            const a = await open({ type: 'wallet', currency: 'USD' });
            await transfer({ debit_account: bank.id, credit_account: a.id, amount: '10.00', reference: ref() });
            const expires = new Date(Date.now() + 400).toISOString();
            const h = await transfer({ debit_account: a.id, credit_account: bob.id, amount: '10.00', pending: true,
                expires_at: expires, reference: ref() });
            assert.equal(h.status, 201, h.text);
            assert.equal(h.json.expires_at.slice(0, 19), expires.slice(0, 19));
            assert.equal((await balance(a.id)).available, '0.00');
            await new Promise((r) => setTimeout(r, 600));
            assert.equal((await balance(a.id)).available, '10.00');
            const g = await req('GET', `/v1/ledger/transfers/${h.json.id}`);
            assert.equal(g.json.status, 'expired');
            assertProblem(await req('POST', `/v1/ledger/transfers/${h.json.id}/post`), 422, 'expired');
        });
    });

    describe('reversals', () => {
        it('reverses a posted transfer at most once', async () => {
            const t = await transfer({ debit_account: alice.id, credit_account: bob.id, amount: '7.00', reference: ref() });
            const b0 = [await balance(alice.id), await balance(bob.id)];
            const key = ref('rev');
            const r = await req('POST', `/v1/ledger/transfers/${t.json.id}/reversal`, { description: 'refund' }, { 'idempotency-key': key });
            assert.equal(r.status, 201, r.text);
            assert.equal(r.json.reverses, t.json.id);
            assert.equal(r.json.debit_account, bob.id);
            assert.equal(r.json.credit_account, alice.id);
            assert.equal(r.json.amount, '7.00');
            assert.equal(r.json.description, 'refund');
            const again = await req('POST', `/v1/ledger/transfers/${t.json.id}/reversal`, { description: 'refund' }, { 'idempotency-key': key });
            assert.equal(again.status, 201);
            assert.equal(again.json.id, r.json.id);
            assertProblem(await req('POST', `/v1/ledger/transfers/${t.json.id}/reversal`), 422, 'already-reversed');
            const orig = await req('GET', `/v1/ledger/transfers/${t.json.id}`);
            assert.equal(orig.json.reversed_by, r.json.id);
            const b1 = [await balance(alice.id), await balance(bob.id)];
            assert.equal(Math.round(Number(b1[0].balance) * 100), Math.round(Number(b0[0].balance) * 100) + 700);
            assert.equal(Math.round(Number(b1[1].balance) * 100), Math.round(Number(b0[1].balance) * 100) - 700);
            assertProblem(await req('POST', `/v1/ledger/transfers/${UNKNOWN}/reversal`), 404, 'not-found');
        });
    });

    describe('batches', () => {
        it('applies in order with a result per transfer', async () => {
            const a = await open({ type: 'checking', currency: 'USD' });
            const r = await req('POST', '/v1/ledger/batches', { transfers: [
                { debit_account: bank.id, credit_account: a.id, amount: '5.00', currency: 'USD', reference: ref('b') },
                { debit_account: a.id, credit_account: bob.id, amount: '6.00', currency: 'USD', reference: ref('b') },
                { debit_account: a.id, credit_account: bob.id, amount: '5.00', currency: 'USD', reference: ref('b') },
                { debit_account: a.id, credit_account: bob.id, amount: '0.001', currency: 'USD', reference: ref('b') },
            ] });
            assert.equal(r.status, 200, r.text);
            assert.equal(r.json.count, 4);
            assert.equal(r.json.succeeded, 2);
            assert.deepEqual(r.json.results.map((x) => x.status), [201, 422, 201, 422]);
            assert.equal(r.json.results[1].type, PROBLEM_BASE + 'insufficient-funds');
            assert.equal(r.json.results[3].type, PROBLEM_BASE + 'invalid-amount');
            assert.equal(r.json.results[0].transfer.amount, '5.00');
            assert.equal((await balance(a.id)).balance, '0.00');
        });

        it('linked: all or nothing', async () => {
            const a = await open({ type: 'checking', currency: 'USD' });
            const refs = [ref('l'), ref('l'), ref('l')];
            const body = { linked: true, transfers: [
                { debit_account: bank.id, credit_account: a.id, amount: '5.00', currency: 'USD', reference: refs[0] },
                { debit_account: a.id, credit_account: bob.id, amount: '5.00', currency: 'USD', reference: refs[1] },
                { debit_account: a.id, credit_account: bob.id, amount: '0.01', currency: 'USD', reference: refs[2] },
            ] };
            const r = await req('POST', '/v1/ledger/batches', body);
            assert.equal(r.status, 200, r.text);
            assert.deepEqual(r.json.results.map((x) => x.type?.slice(PROBLEM_BASE.length)),
                ['linked-transfer-failed', 'linked-transfer-failed', 'insufficient-funds']);
            assert.equal((await balance(a.id)).balance, '0.00');
            for (const x of refs) assert.deepEqual((await req('GET', `/v1/ledger/transfers?reference=${x}`)).json.items, []);
            body.transfers[2].amount = '0.00';
            assertProblem(await req('POST', '/v1/ledger/batches', { transfers: [{ ...body.transfers[0], amount: 'x' }] }),
                400, 'invalid-request', 'transfers[0].amount');
            body.transfers.pop();
            const ok = await req('POST', '/v1/ledger/batches', body);
            assert.deepEqual(ok.json.results.map((x) => x.status), [201, 201]);
            assert.equal((await balance(a.id)).balance, '0.00');
        });

        it('takes 8,190 transfers in one request and refuses more', async () => {
            const a = await open({ type: 'checking', currency: 'USD' });
            const transfers = [];
            for (let i = 0; i < 8190; i++) {
                transfers.push({ debit_account: bank.id, credit_account: a.id, amount: '0.01', currency: 'USD', reference: ref('big') });
            }
            const r = await req('POST', '/v1/ledger/batches', { transfers });
            assert.equal(r.status, 200, r.text.slice(0, 300));
            assert.equal(r.json.succeeded, 8190);
            assert.equal((await balance(a.id)).balance, '81.90');
            transfers.push({ ...transfers[0], reference: ref('big') });
            assertProblem(await req('POST', '/v1/ledger/batches', { transfers }), 400, 'invalid-request', 'transfers');
            assertProblem(await req('POST', '/v1/ledger/batches', { transfers: [] }), 400, 'invalid-request', 'transfers');
        });
    });

    describe('movements, balances and statements', () => {
        let acct;
        let mid;
        const ids = [];
        before(async () => {
            acct = await open({ type: 'checking', currency: 'USD', holder_name: 'Statement Holder' });
            for (const [amount, from] of [['100.00', bank], ['25.00', null], ['10.00', bank]]) {
                const body = from ? { debit_account: from.id, credit_account: acct.id } : { debit_account: acct.id, credit_account: bob.id };
                const r = await transfer({ ...body, amount, reference: ref('mv'), description: `mv ${amount}` });
                assert.equal(r.status, 201, r.text);
                ids.push(r.json.id);
                if (ids.length === 2) {
                    await new Promise((res) => setTimeout(res, 20));
                    mid = new Date().toISOString();
                    await new Promise((res) => setTimeout(res, 20));
                }
            }
        });

        it('lists movements newest first with a cursor (last 4)', async () => {
            const r = await req('GET', `/v1/accounts/${acct.id}/movements?limit=4`);
            assert.equal(r.status, 200);
            assert.deepEqual(r.json.items.map((m) => m.amount), ['10.00', '-25.00', '100.00']);
            assert.deepEqual(r.json.items.map((m) => m.balance_after), ['85.00', '75.00', '100.00']);
            assert.equal(r.json.items[1].counterparty.name, 'Bob');
            assert.equal(r.json.items[1].counterparty.number, bob.number);
            assert.equal(r.json.items[0].transfer_id, ids[2]);
            assert.equal(r.json.items[0].description, 'mv 10.00');
            assert.equal(r.json.next_cursor, null);
            const p1 = await req('GET', `/v1/accounts/${acct.id}/movements?limit=2`);
            assert.equal(p1.json.items.length, 2);
            assert.ok(p1.json.next_cursor);
            const p2 = await req('GET', `/v1/accounts/${acct.id}/movements?limit=2&cursor=${p1.json.next_cursor}`);
            assert.deepEqual(p2.json.items.map((m) => m.amount), ['100.00']);
            assert.equal(p2.json.next_cursor, null);
            const since = await req('GET', `/v1/accounts/${acct.id}/movements?from=${encodeURIComponent(mid)}`);
            assert.deepEqual(since.json.items.map((m) => m.amount), ['10.00']);
            const until = await req('GET', `/v1/accounts/${acct.id}/movements?to=${encodeURIComponent(mid)}`);
            assert.deepEqual(until.json.items.map((m) => m.amount), ['-25.00', '100.00']);
            assertProblem(await req('GET', `/v1/accounts/${acct.id}/movements?limit=0`), 400, 'invalid-request', 'limit');
            assertProblem(await req('GET', `/v1/accounts/${acct.id}/movements?limit=501`), 400, 'invalid-request', 'limit');
            assertProblem(await req('GET', `/v1/accounts/${acct.id}/movements?from=yesterday`), 400, 'invalid-request', 'from');
            assertProblem(await req('GET', `/v1/accounts/${acct.id}/movements?cursor=abc`), 400, 'invalid-request', 'cursor');
        });

        it('gives the balance now and at a point in time', async () => {
            const now = await req('GET', `/v1/accounts/${acct.id}/balance`);
            assert.equal(now.status, 200);
            assert.equal(now.json.balance, '85.00');
            assert.equal(now.json.available, '85.00');
            const then = await req('GET', `/v1/accounts/${acct.id}/balance?at=${encodeURIComponent(mid)}`);
            assert.equal(then.json.balance, '75.00');
            const before = await req('GET', `/v1/accounts/${acct.id}/balance?at=2001-01-01`);
            assert.equal(before.json.balance, '0.00');
            assertProblem(await req('GET', `/v1/accounts/${acct.id}/balance?at=soon`), 400, 'invalid-request', 'at');
        });

        it('produces a JSON statement with opening, closing and totals', async () => {
            const r = await req('GET', `/v1/accounts/${acct.id}/statement?from=${encodeURIComponent(mid)}&to=2100-01-01`);
            assert.equal(r.status, 200, r.text);
            assert.equal(r.json.opening_balance, '75.00');
            assert.equal(r.json.closing_balance, '85.00');
            assert.equal(r.json.total_credits, '10.00');
            assert.equal(r.json.total_debits, '0.00');
            assert.equal(r.json.count, 1);
            assert.equal(r.json.account.id, acct.id);
            const all = await req('GET', `/v1/accounts/${acct.id}/statement?from=2001-01-01&to=2100-01-01`);
            assert.deepEqual(all.json.movements.map((m) => m.amount), ['100.00', '-25.00', '10.00']); // oldest first
            assert.equal(all.json.total_credits, '110.00');
            assert.equal(all.json.total_debits, '25.00');
            assertProblem(await req('GET', `/v1/accounts/${acct.id}/statement?from=2001-01-01`), 400, 'invalid-request', 'to');
            assertProblem(await req('GET', `/v1/accounts/${acct.id}/statement?from=2030-01-01&to=2001-01-01`), 400, 'invalid-request');
        });

        it('produces a CSV statement with Accept: text/csv', async () => {
            const r = await req('GET', `/v1/accounts/${acct.id}/statement?from=2001-01-01&to=2100-01-01`, undefined, { accept: 'text/csv' });
            assert.equal(r.status, 200);
            assert.match(r.headers.get('content-type'), /^text\/csv/);
            const lines = r.text.trim().split('\r\n');
            assert.equal(lines[0], 'type,date,transfer_id,description,counterparty_name,counterparty_number,amount,balance');
            assert.equal(lines.length, 6);
            assert.match(lines[1], /^opening,2001-01-01T00:00:00\.000000Z,,,,,,0\.00$/);
            assert.equal(lines[2].split(',')[2], ids[0]);
            assert.deepEqual(lines[3].split(',').slice(3), ['mv 25.00', 'Bob', bob.number, '-25.00', '75.00']);
            assert.match(lines[5], /^closing,.*,85\.00$/);
        });
    });

    it('passes `boveda admin ledger verify`', async () => {
        const r = srv.run(['admin', 'ledger', 'verify']);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /all invariants hold/);
        const j = srv.run(['admin', 'ledger', 'verify', '--json']);
        assert.equal(j.code, 0);
        const out = JSON.parse(j.stdout);
        assert.equal(out.ok, true);
        assert.deepEqual(out.checks.map((c) => c.name), ['zero_sum', 'balances_match_movements', 'running_balances',
            'movement_chains', 'holds_match_pending', 'overdraft_limits', 'transfer_postings',
            'idempotency_keys_unique', 'transfers_consistent']);
        assert.equal(srv.run(['admin', 'ledger', 'bogus']).code, 2);
    });
});
