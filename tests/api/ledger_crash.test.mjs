// Crash test of the ledger (issue 4): clients transfer concurrently, the server is killed
// with SIGKILL mid-run and restarted on the same data directory; then every acknowledged
// (201) transfer is present exactly once, no unacknowledged one is present twice, every
// balance equals the sum of the transfers that exist, retries of acknowledged references
// replay the original, and `boveda admin ledger verify` passes.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { startServer } from './lib/server.mjs';

const CLIENTS = 16;
const ACCOUNTS = 12;
const SEED_MINOR = 1_000_000; // 10,000.00 each

describe('ledger crash safety', () => {
    let srv;
    after(async () => {
        if (srv?.running) await srv.stop({ check: false });
    });

    it('keeps every acknowledged transfer exactly once across kill -9', async () => {
        srv = await startServer();
        const req = (method, path, body, headers = {}) => srv.request(method, path, { body, headers, token: srv.adminToken });
        const open = async (body) => {
            const r = await req('POST', '/v1/accounts', { holder_name: 'Crash', ...body });
            assert.equal(r.status, 201, r.text);
            return r.json.id;
        };
        const bank = await open({ type: 'internal', currency: 'USD', allow_negative: true });
        const accts = [];
        for (let i = 0; i < ACCOUNTS; i++) accts.push(await open({ type: 'checking', currency: 'USD' }));
        const seed = await req('POST', '/v1/ledger/batches', {
            transfers: accts.map((a, i) => ({ debit_account: bank, credit_account: a, amount: '10000.00', currency: 'USD',
                reference: `seed-${i}` })),
        });
        assert.equal(seed.status, 200, seed.text);
        assert.equal(seed.json.succeeded, ACCOUNTS);

        const attempted = new Map(); // reference -> {d, c, minor}
        const acked = new Map(); // reference -> transfer id
        let stop = false;
        let n = 0;
        const client = async (k) => {
            while (!stop) {
                const d = Math.floor(Math.random() * ACCOUNTS);
                let c = Math.floor(Math.random() * ACCOUNTS);
                if (c === d) c = (c + 1) % ACCOUNTS;
                const minor = 1 + Math.floor(Math.random() * 500);
                const reference = `crash-${k}-${++n}`;
                attempted.set(reference, { d, c, minor });
                try {
                    const r = await req('POST', '/v1/ledger/transfers', {
                        debit_account: accts[d], credit_account: accts[c], currency: 'USD',
                        amount: (minor / 100).toFixed(2), reference,
                    });
                    if (r.status === 201) acked.set(reference, r.json.id);
                    else if (r.status !== 422) assert.fail(`unexpected ${r.status}: ${r.text}`);
                } catch {
                    return; // the server went away
                }
            }
        };
        const clients = Array.from({ length: CLIENTS }, (_, k) => client(k));
        // let them run until a good number is acknowledged, then pull the plug
        const t0 = Date.now();
        while (acked.size < 1500 && Date.now() - t0 < 20000) await new Promise((r) => setTimeout(r, 20));
        const killed = await srv.kill();
        assert.equal(killed.signal, 'SIGKILL');
        stop = true;
        await Promise.all(clients);
        assert.ok(acked.size > 100, `only ${acked.size} transfers acknowledged before the kill`);

        await srv.restart();
        // every attempted reference: acknowledged ones exactly once, the others at most once
        const balances = new Array(ACCOUNTS).fill(SEED_MINOR);
        let present = 0;
        for (const [reference, t] of attempted) {
            const r = await req('GET', `/v1/ledger/transfers?reference=${reference}`);
            assert.equal(r.status, 200, r.text);
            assert.ok(r.json.items.length <= 1);
            if (acked.has(reference)) {
                assert.equal(r.json.items.length, 1, `acknowledged ${reference} is missing after the crash`);
                assert.equal(r.json.items[0].id, acked.get(reference));
            }
            if (r.json.items.length === 1) {
                const x = r.json.items[0];
                assert.equal(x.debit_account, accts[t.d]);
                assert.equal(x.credit_account, accts[t.c]);
                assert.equal(x.amount, (t.minor / 100).toFixed(2));
                balances[t.d] -= t.minor;
                balances[t.c] += t.minor;
                present++;
            }
        }
        assert.ok(present >= acked.size);
        for (let i = 0; i < ACCOUNTS; i++) {
            const r = await req('GET', `/v1/accounts/${accts[i]}`);
            assert.equal(Math.round(Number(r.json.balance) * 100), balances[i], `balance of account ${i}`);
        }
        // a client retrying an acknowledged transfer gets the original back, not a second one
        let retried = 0;
        for (const [reference, id] of acked) {
            if (retried++ === 20) break;
            const t = attempted.get(reference);
            const r = await req('POST', '/v1/ledger/transfers', {
                debit_account: accts[t.d], credit_account: accts[t.c], currency: 'USD',
                amount: (t.minor / 100).toFixed(2), reference,
            });
            assert.equal(r.status, 201);
            assert.equal(r.json.id, id);
        }
        const v = srv.run(['admin', 'ledger', 'verify']);
        assert.equal(v.code, 0, v.stdout + v.stderr);
        await srv.stop();
    });
});
