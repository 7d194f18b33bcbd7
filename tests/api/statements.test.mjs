// Statements by e-mail (issue 8, docs/statements.md), black box: a customer with an account
// and movements asks for a PDF and a CSV statement; each arrives at the SMTP sink as an
// e-mail with the file attached (the MIME parsed, the base64 decoded, the PDF's deflated
// content streams inflated) with the right opening and closing balances; the request's
// status becomes "sent". Bad input, another customer's account or request, missing
// credentials, idempotent retries and the per-customer rate limit get their statuses and
// problem types.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';

import { BIN, startServer } from './lib/server.mjs';
import { eventually, notifyEnv } from './lib/smsfake.mjs';
import { startSmtpSink } from './lib/smtpsink.mjs';
import { adminJson, assertProblem, basicAuth } from './lib/tools.mjs';

const PASSWORD = 'correct horse battery staple';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The text of every content stream of a PDF, inflated when deflated. */
function pdfText(buf) {
    const out = [];
    let at = 0;
    for (;;) {
        const s = buf.indexOf('stream', at, 'latin1');
        if (s < 0) break;
        let start = s + 'stream'.length;
        if (buf[start] === 0x0d) start++;
        if (buf[start] === 0x0a) start++;
        const e = buf.indexOf('endstream', start, 'latin1');
        if (e < 0) break;
        const data = buf.subarray(start, e);
        try {
            out.push(zlib.inflateSync(data).toString('latin1'));
        } catch {
            out.push(data.toString('latin1'));
        }
        at = e + 'endstream'.length;
    }
    return out.join('\n');
}

/** RFC 4180 parser for the statement CSV: rows of cells, CRLF line ends. */
function parseCsv(text) {
    const rows = [];
    let row = [];
    let cell = '';
    let quoted = false;
    for (let i = 0; i < text.length; i++) {
        const ch = text[i];
        if (quoted) {
            if (ch === '"' && text[i + 1] === '"') {
                cell += '"';
                i++;
            } else if (ch === '"') {
                quoted = false;
            } else {
                cell += ch;
            }
        } else if (ch === '"') {
            quoted = true;
        } else if (ch === ',') {
            row.push(cell);
            cell = '';
        } else if (ch === '\r' && text[i + 1] === '\n') {
            row.push(cell);
            rows.push(row);
            row = [];
            cell = '';
            i++;
        } else {
            assert.notEqual(ch, '\n', 'a bare LF outside quotes');
            cell += ch;
        }
    }
    assert.equal(cell, '', 'the file ends with CRLF');
    return rows;
}

describe('statements by e-mail', () => {
    let srv;
    let sink;
    const users = {};
    const tok = {};
    const acct = {};
    let seq = 0;
    let from; // the period starts at the first payment: the opening balance is the deposit
    let to;

    const ledger = (method, p, body) => srv.request(method, p, { body, token: srv.adminToken });
    const open = async (body) => {
        const r = await ledger('POST', '/v1/accounts', body);
        assert.equal(r.status, 201, r.text);
        return r.json;
    };
    const transfer = async (debit, credit, amount, description) => {
        const r = await ledger('POST', '/v1/ledger/transfers', {
            debit_account: debit.id, credit_account: credit.id, amount, currency: 'EUR', description,
            reference: `stmt-${++seq}`,
        });
        assert.equal(r.status, 201, r.text);
        return r.json;
    };
    const passwordToken = async (client, username, scope) => {
        const r = await srv.request('POST', '/oauth2/token', {
            headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client) },
            body: new URLSearchParams({ grant_type: 'password', username, password: PASSWORD, scope }).toString(),
        });
        assert.equal(r.status, 200, r.text);
        return r.json.access_token;
    };
    const ask = (token, body, headers = {}) => srv.request('POST', '/v1/me/statements', { token, body, headers });
    const status = (token, id) => srv.request('GET', `/v1/me/statements/${id}`, { token });
    const mailFor = (address, ext) => (msgs) =>
        msgs.find((m) => m.to.includes(address) && m.attachments.some((a) => a.filename.endsWith(ext)));

    before(async () => {
        sink = await startSmtpSink();
        srv = await startServer({
            env: {
                BOVEDA_MFA_LOGIN_POLICY: 'enrolled',
                BOVEDA_LOCALE: 'es',
                ...notifyEnv({ smtp: { url: sink.url } }),
            },
        });
        users.alice = adminJson(srv, ['users', 'create', '--username', 'alice', '--email', 'alice@example.test', '--name',
            'Alicia Núñez', '--password-stdin'], `${PASSWORD}\n`);
        users.bob = adminJson(srv, ['users', 'create', '--username', 'bob', '--email', 'bob@example.test', '--name',
            'Bob Example', '--password-stdin'], `${PASSWORD}\n`);
        users.carol = adminJson(srv, ['users', 'create', '--username', 'carol', '--phone', '+34600111333', '--name',
            'Carol Sin Correo', '--password-stdin'], `${PASSWORD}\n`);
        const legacy = adminJson(srv, ['clients', 'create', '--name', 'legacy-app', '--grant', 'password', '--scope',
            'openid banking:read banking:write', '--legacy-password']);
        tok.alice = await passwordToken(legacy, 'alice', 'openid banking:read');
        tok.bob = await passwordToken(legacy, 'bob', 'openid banking:read');
        tok.carol = await passwordToken(legacy, 'carol', 'openid banking:read');
        tok.aliceOpenid = await passwordToken(legacy, 'alice', 'openid');

        acct.bank = await open({ type: 'internal', currency: 'EUR', holder_name: 'Bank funding', allow_negative: true });
        acct.alice = await open({ type: 'checking', currency: 'EUR', holder_name: 'Alicia Núñez',
            customer_id: users.alice.id });
        acct.bob = await open({ type: 'checking', currency: 'EUR', holder_name: 'Bob Example', customer_id: users.bob.id });
        acct.carol = await open({ type: 'checking', currency: 'EUR', holder_name: 'Carol', customer_id: users.carol.id });
        await transfer(acct.bank, acct.alice, '1000.00', 'Depósito inicial');
        const first = await transfer(acct.alice, acct.bob, '10.00', 'Café y churros');
        for (let i = 2; i <= 5; i++) await transfer(acct.alice, acct.bob, `${i}0.00`, `Pago ${i}`);
        await transfer(acct.bob, acct.alice, '5.00', "=cmd|' /C calc'!A0"); // a formula as a description
        from = first.created_at;
        to = new Date(Date.now() + 86400000).toISOString().slice(0, 10); // tomorrow, as a date
    });
    after(async () => {
        if (srv?.running) await srv.stop();
        await sink?.close();
    });

    it('sends a PDF statement by e-mail with the opening and closing balances', { timeout: 60000 }, async () => {
        const r = await ask(tok.alice, { account: acct.alice.id, from, to, format: 'pdf' });
        assert.equal(r.status, 202, r.text);
        assert.match(r.json.id, UUID);
        assert.equal(r.json.status, 'queued');
        assert.equal(r.json.account, acct.alice.id);
        assert.equal(r.json.format, 'pdf');
        assert.equal(r.headers.get('location'), `/v1/me/statements/${r.json.id}`);
        assert.equal(r.headers.get('cache-control'), 'no-store');

        const msgs = await sink.waitFor(mailFor('alice@example.test', '.pdf'), 30000);
        const m = mailFor('alice@example.test', '.pdf')(msgs);
        assert.match(m.subject, /Tu estado de cuenta del \d\d\/\d\d\/\d{4} al \d\d\/\d\d\/\d{4}/);
        assert.match(m.text, /\*\*\*\*\d{4}/); // the account masked in the e-mail body
        assert.ok(!m.text.includes(acct.alice.number), 'the full number is only inside the attachment');
        assert.equal(m.attachments.length, 1);
        const a = m.attachments[0];
        assert.equal(a.contentType, 'application/pdf');
        assert.match(a.filename, new RegExp(`^estado-de-cuenta-${acct.alice.number}-\\d{4}-\\d\\d-\\d\\d_\\d{4}-\\d\\d-\\d\\d\\.pdf$`));
        assert.equal(a.data.subarray(0, 5).toString('latin1'), '%PDF-');
        assert.match(a.data.toString('latin1'), /\/FlateDecode/); // compressed
        assert.match(a.data.toString('latin1'), /\/Count 1\b/); // one page for 6 movements
        const text = pdfText(a.data);
        assert.match(text, /\(B\\363veda\) Tj/); // branded; accents in WinAnsiEncoding
        assert.match(text, /\(Alicia N\\372\\361ez\) Tj/); // the holder
        assert.ok(text.includes(`(${acct.alice.number} \\050cuenta corriente\\051) Tj`), 'the full account number');
        assert.match(text, /\(Saldo inicial\) Tj/);
        assert.match(text, /\(1\.000,00 EUR\) Tj/); // opening: the deposit, before the period
        assert.match(text, /\(Caf\\351 y churros\) Tj/);
        assert.match(text, /\(-50,00\) Tj/);
        assert.match(text, /\(Total cargos\) Tj/);
        assert.match(text, /\(-150,00 EUR\) Tj/); // debits 10+20+30+40+50
        assert.match(text, /\(5,00 EUR\) Tj/); // credits: the refund
        assert.match(text, /\(Saldo final\) Tj/);
        assert.match(text, /\(855,00 EUR\) Tj/); // closing
        assert.match(text, /\(P\\341gina 1 de 1\) Tj/);

        const s = await eventually(async () => {
            const g = await status(tok.alice, r.json.id);
            assert.equal(g.status, 200, g.text);
            return g.json.status === 'sent' ? g.json : null;
        }, 20000, 'status sent');
        assert.equal(s.movements, 6);
        assert.equal(s.id, r.json.id);
        assert.equal(s.error, undefined);
    });

    it('sends a CSV statement: RFC 4180, opening and closing balances, formulas defused', { timeout: 60000 }, async () => {
        const r = await ask(tok.alice, { account: acct.alice.id, from, to, format: 'csv' });
        assert.equal(r.status, 202, r.text);
        const msgs = await sink.waitFor(mailFor('alice@example.test', '.csv'), 30000);
        const a = mailFor('alice@example.test', '.csv')(msgs).attachments.find((x) => x.filename.endsWith('.csv'));
        assert.equal(a.contentType, 'text/csv');
        const text = a.data.toString('utf8');
        const rows = parseCsv(text);
        assert.deepEqual(rows[0], ['date', 'type', 'description', 'counterparty', 'counterparty_account', 'amount',
            'balance', 'currency', 'transfer_id']);
        assert.equal(rows.length, 1 + 1 + 6 + 3);
        const byType = (t) => rows.filter((x) => x[1] === t);
        assert.equal(byType('opening_balance')[0][6], '1000.00');
        assert.equal(byType('opening_balance')[0][0], from);
        assert.equal(byType('closing_balance')[0][6], '855.00');
        assert.equal(byType('total_credits')[0][5], '5.00');
        assert.equal(byType('total_debits')[0][5], '-150.00');
        const moves = byType('movement');
        assert.equal(moves.length, 6);
        assert.deepEqual(moves.map((x) => x[5]), ['-10.00', '-20.00', '-30.00', '-40.00', '-50.00', '5.00']);
        assert.deepEqual(moves.map((x) => x[6]), ['990.00', '970.00', '940.00', '900.00', '850.00', '855.00']);
        assert.equal(moves[0][2], 'Café y churros'); // UTF-8
        assert.equal(moves[0][3], 'Bob Example');
        assert.equal(moves[0][4], acct.bob.number);
        assert.equal(moves[5][2], "'=cmd|' /C calc'!A0"); // defused: a leading apostrophe
        assert.ok(text.includes(`"'=cmd|' /C calc'!A0"`));
        assert.ok(moves.every((x) => x[7] === 'EUR'));
        await eventually(async () => (await status(tok.alice, r.json.id)).json.status === 'sent', 20000, 'csv sent');
    });

    it('refuses bad input with the field named, and unknown or other customers\' accounts with 404', async () => {
        const good = { account: acct.alice.id, from, to, format: 'pdf' };
        assertProblem(await ask(tok.alice, { ...good, account: acct.bob.id }), 404, 'not-found');
        assertProblem(await ask(tok.alice, { ...good, account: randomUUID() }), 404, 'not-found');
        assertProblem(await ask(tok.alice, { ...good, account: 'not-an-id' }), 404, 'not-found');
        assertProblem(await ask(tok.alice, { ...good, account: acct.bank.id }), 404, 'not-found'); // the bank's own
        assertProblem(await ask(tok.alice, { ...good, from: to, to: from }), 422, 'validation-failed', 'to');
        assertProblem(await ask(tok.alice, { ...good, from: '2026-01-01', to: '2026-01-01' }), 422, 'validation-failed',
            'to');
        assertProblem(await ask(tok.alice, { ...good, from: '2024-01-01', to: '2025-01-02' }), 422, 'validation-failed',
            'to'); // 367 days
        assertProblem(await ask(tok.alice, { ...good, format: 'xls' }), 422, 'validation-failed', 'format');
        assertProblem(await ask(tok.alice, { ...good, from: 'yesterday' }), 422, 'validation-failed', 'from');
        assertProblem(await ask(tok.alice, { ...good, to: '2026-13-45' }), 422, 'validation-failed', 'to');
        assertProblem(await ask(tok.alice, { account: acct.alice.id, from, to }), 400, 'invalid-request', 'format');
        assertProblem(await ask(tok.alice, { ...good, extra: 1 }), 400, 'invalid-request', 'extra');
        // a customer without an e-mail address cannot get a statement by e-mail
        assertProblem(await ask(tok.carol, { ...good, account: acct.carol.id }), 422, 'validation-failed');
        // credentials
        assertProblem(await ask(undefined, good), 401, 'unauthenticated');
        assertProblem(await ask(tok.aliceOpenid, good), 403, 'forbidden');
        assertProblem(await ask(srv.adminToken, good), 403, 'forbidden'); // not a customer
    });

    it('shows a request only to its owner', async () => {
        const r = await ask(tok.alice, { account: acct.alice.id, from, to, format: 'csv' });
        assert.equal(r.status, 202, r.text);
        assertProblem(await status(tok.bob, r.json.id), 404, 'not-found');
        assertProblem(await status(tok.alice, randomUUID()), 404, 'not-found');
        assertProblem(await status(tok.alice, 'nope'), 404, 'not-found');
        assertProblem(await status(undefined, r.json.id), 401, 'unauthenticated');
        const mine = await status(tok.alice, r.json.id);
        assert.equal(mine.status, 200, mine.text);
        assert.ok(['queued', 'sent'].includes(mine.json.status));
    });

    it('replays a request with the same Idempotency-Key and refuses the key with another body', async () => {
        const key = `stmt-${randomUUID()}`;
        const body = { account: acct.alice.id, from, to, format: 'pdf' };
        const a = await ask(tok.alice, body, { 'idempotency-key': key });
        assert.equal(a.status, 202, a.text);
        const b = await ask(tok.alice, body, { 'idempotency-key': key });
        assert.equal(b.status, 202, b.text);
        assert.equal(b.json.id, a.json.id);
        assertProblem(await ask(tok.alice, { ...body, format: 'csv' }, { 'idempotency-key': key }), 422,
            'idempotency-key-reused', 'Idempotency-Key');
        // the same key is another customer's own namespace
        const bobs = await ask(tok.bob, { ...body, account: acct.bob.id }, { 'idempotency-key': key });
        assert.equal(bobs.status, 202, bobs.text);
        assert.notEqual(bobs.json.id, a.json.id);
        await eventually(async () => (await status(tok.alice, a.json.id)).json.status === 'sent', 20000, 'sent');
        const sent = sink.messages.filter((m) => m.raw.includes(a.json.id));
        assert.ok(sent.length <= 1, 'one e-mail per request at most');
    });

    it('limits statement requests per customer per hour (429) and audits them', { timeout: 60000 }, async () => {
        const body = { account: acct.bob.id, from, to, format: 'csv' };
        const audit = async () => {
            const r = await srv.request('GET', `/v1/audit/events?action=statements.request.create&limit=100`,
                { token: srv.adminToken });
            assert.equal(r.status, 200, r.text);
            return r.json.items.filter((e) => e.actor === `user:${users.bob.id}`);
        };
        const before = (await audit()).length; // bob asked once in the idempotency test
        const ids = [];
        for (let i = before; i < 10; i++) {
            const r = await ask(tok.bob, body);
            assert.equal(r.status, 202, `request ${i + 1}: ${r.text}`);
            ids.push(r.json.id);
        }
        const r = await ask(tok.bob, body);
        assertProblem(r, 429, 'rate-limited');
        assert.match(r.headers.get('retry-after'), /^\d+$/);
        assert.ok(Number(r.headers.get('retry-after')) <= 3601);
        // alice is not affected by bob's limit
        assert.equal((await ask(tok.alice, { account: acct.alice.id, from, to, format: 'csv' })).status, 202);
        const events = await audit();
        assert.equal(events.filter((e) => e.outcome === 'success').length, 10);
        assert.equal(events.filter((e) => e.outcome === 'denied').length, 1);
        const one = events.find((e) => e.resource === `statement:${ids[0]}`);
        assert.ok(one, 'the request is audited with its id');
        // every accepted request is delivered
        await eventually(async () => {
            for (const id of ids) if ((await status(tok.bob, id)).json.status !== 'sent') return false;
            return true;
        }, 40000, 'all of bob\'s statements sent');
    });
});

/** An RFC 3339 time with microseconds, one microsecond later. */
function plusOneMicro(ts) {
    const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z$/.exec(ts);
    assert.ok(m, `not an RFC 3339 UTC time: ${ts}`);
    const us = BigInt(Date.parse(`${m[1]}Z`)) * 1000n + BigInt((m[2] ?? '').padEnd(6, '0')) + 1n;
    const sec = new Date(Number(us / 1000000n) * 1000).toISOString().slice(0, 19);
    return `${sec}.${String(us % 1000000n).padStart(6, '0')}Z`;
}

/** `boveda worker --only <only>` on the server's data directory (the harness's startServer
 * waits for an HTTP listener, which a worker never has). Resolves once it logs "worker
 * ready"; stop() sends SIGTERM and checks the exit status and the sanitizers' silence. */
async function startWorker(env, only) {
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('BOVEDA_')));
    const child = spawn(BIN, ['worker', '--only', only], { env: { ...base, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`worker not ready: ${stderr}`)), 10000);
        child.stderr.on('data', (d) => {
            stderr += d.toString();
            if (stderr.includes('"worker ready"')) {
                clearTimeout(t);
                resolve();
            }
        });
        exited.then((e) => reject(new Error(`worker exited (${e.code}): ${stderr}`)));
    });
    return {
        get stderr() {
            return stderr;
        },
        async stop() {
            child.kill('SIGTERM');
            const e = await exited;
            assert.equal(e.code, 0, `worker exit ${e.code}/${e.signal}: ${stderr.slice(-2000)}`);
            assert.doesNotMatch(stderr, /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/);
        },
    };
}

describe('statements built by a separate `boveda worker`: a realistic month, the movement cap', () => {
    let srv;
    let worker;
    let sink;
    let tok;
    let bank;
    let dave;
    let other;
    let seq = 0;

    const ledger = (method, p, body) => srv.request(method, p, { body, token: srv.adminToken });
    const pay = async (n, description) => {
        const transfers = [];
        for (let i = 0; i < n; i++) {
            transfers.push({ debit_account: dave.id, credit_account: other.id, amount: '1.00', currency: 'EUR',
                reference: `cap-${++seq}`, description: `${description} ${seq}` });
        }
        const r = await ledger('POST', '/v1/ledger/batches', { transfers });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.succeeded, n, r.text);
    };
    const one = async (debit, credit, amount, description) => {
        const r = await ledger('POST', '/v1/ledger/transfers', { debit_account: debit.id, credit_account: credit.id,
            amount, currency: 'EUR', reference: `cap-${++seq}`, description });
        assert.equal(r.status, 201, r.text);
        return r.json;
    };
    const ask = (body) => srv.request('POST', '/v1/me/statements', { token: tok, body });
    const status = async (id) => {
        const r = await srv.request('GET', `/v1/me/statements/${id}`, { token: tok });
        assert.equal(r.status, 200, r.text);
        return r.json;
    };

    before(async () => {
        sink = await startSmtpSink();
        // the server runs the e-mail consumers only: statements wait for the worker
        srv = await startServer({
            env: { BOVEDA_MFA_LOGIN_POLICY: 'enrolled', BOVEDA_SERVE_CONSUMERS: 'notify', BOVEDA_LOCALE: 'en',
                ...notifyEnv({ smtp: { url: sink.url } }) },
        });
        const user = adminJson(srv, ['users', 'create', '--username', 'dave', '--email', 'dave@example.test', '--name',
            'Dave Example', '--password-stdin'], `${PASSWORD}\n`);
        const legacy = adminJson(srv, ['clients', 'create', '--name', 'legacy-app', '--grant', 'password', '--scope',
            'openid banking:read', '--legacy-password']);
        const t = await srv.request('POST', '/oauth2/token', {
            headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(legacy) },
            body: new URLSearchParams({ grant_type: 'password', username: 'dave', password: PASSWORD,
                scope: 'openid banking:read' }).toString(),
        });
        assert.equal(t.status, 200, t.text);
        tok = t.json.access_token;
        const open = async (body) => {
            const r = await ledger('POST', '/v1/accounts', body);
            assert.equal(r.status, 201, r.text);
            return r.json;
        };
        bank = await open({ type: 'internal', currency: 'EUR', holder_name: 'Bank', allow_negative: true });
        dave = await open({ type: 'savings', currency: 'EUR', holder_name: 'Dave Example', customer_id: user.id });
        other = await open({ type: 'checking', currency: 'EUR', holder_name: 'Shop' });
    });
    after(async () => {
        await worker?.stop();
        if (srv?.running) await srv.stop();
        await sink?.close();
    });

    it('queues while no consumer runs, sends a 300-movement PDF and fails a request that outgrew the cap',
        { timeout: 120000 }, async () => {
            const deposit = await one(bank, dave, '10000.00', 'Salary');
            await pay(298, 'Card payment');
            const last = await one(dave, other, '1.00', 'Last of the month'); // movement 300
            const month = { account: dave.id, from: deposit.created_at, to: plusOneMicro(last.created_at) };
            const pdf = await ask({ ...month, format: 'pdf' });
            assert.equal(pdf.status, 202, pdf.text);
            assert.equal((await status(pdf.json.id)).status, 'queued'); // nobody consumes `statements` here

            await pay(100, 'More');
            const open = { account: dave.id, from: deposit.created_at, to: '2999-01-01' };
            assertProblem(await ask({ ...open, format: 'csv' }), 422, 'validation-failed', 'to'); // > 366 days
            const until = new Date(Date.now() + 86400000).toISOString().slice(0, 10);
            const csv = await ask({ ...open, to: until, format: 'csv' }); // exactly 400 movements: accepted
            assert.equal(csv.status, 202, csv.text);
            await one(dave, other, '1.00', 'One too many');
            const over = await ask({ ...open, to: until, format: 'csv' });
            assertProblem(over, 422, 'validation-failed', 'to');
            assert.match(over.json.detail, /more than 400 movements/);

            worker = await startWorker(srv.env, 'statements');
            const sent = await eventually(async () => {
                const s = await status(pdf.json.id);
                return s.status === 'sent' ? s : null;
            }, 30000, 'the PDF statement sent by the worker');
            assert.equal(sent.movements, 300);
            const failed = await eventually(async () => {
                const s = await status(csv.json.id);
                return s.status === 'failed' ? s : null;
            }, 30000, 'the CSV statement failed');
            assert.equal(failed.error, 'too_many_movements'); // 401 by the time it was built

            const msgs = await sink.waitFor((ms) => ms.some((m) => m.to.includes('dave@example.test')), 30000);
            const mail = msgs.filter((m) => m.to.includes('dave@example.test'));
            assert.equal(mail.length, 1, 'only the PDF was sent');
            assert.match(mail[0].subject, /^Your \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d statement$/); // English
            const a = mail[0].attachments[0];
            assert.match(a.filename, /^statement-\d{16}-\d{4}-\d\d-\d\d_\d{4}-\d\d-\d\d\.pdf$/);
            assert.equal(a.data.subarray(0, 5).toString('latin1'), '%PDF-');
            assert.ok(a.data.length < 128 * 1024, `${a.data.length} bytes`);
            assert.match(a.data.toString('latin1'), /\/Count 6\b/); // 45 rows, then 53 per page
            const text = pdfText(a.data);
            assert.match(text, /\(Opening balance\) Tj/);
            assert.match(text, /\(0\.00 EUR\) Tj/);
            assert.match(text, /\(Closing balance\) Tj/);
            assert.match(text, /\(9,701\.00 EUR\) Tj/); // 10,000 - 299 x 1.00
            assert.match(text, /\(10,000\.00 EUR\) Tj/); // the salary's total of credits
            assert.match(text, /\(Page 6 of 6\) Tj/);
            assert.equal(text.match(/\(Description\) Tj/g).length, 6, 'the table header on every page');

            // the failure is audited as such
            const ev = await srv.request('GET', '/v1/audit/events?action=statements.statement.send&limit=100',
                { token: srv.adminToken });
            assert.equal(ev.status, 200, ev.text);
            const byResource = Object.fromEntries(ev.json.items.map((e) => [e.resource, e]));
            assert.equal(byResource[`statement:${pdf.json.id}`].outcome, 'success');
            assert.equal(byResource[`statement:${csv.json.id}`].outcome, 'failure');
        });
});
