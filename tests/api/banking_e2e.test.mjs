// The internet-banking story end to end (issue 8), black box: a customer signs in with
// openid-client through the hosted login (password, then the SMS code read from the SMS
// provider fake), reads the summary, orders a transfer to another customer, confirms it with
// the code sent by SMS, sees it succeed, and both customers are told by e-mail (SMTP sink)
// and SMS (fake); the movement is on both accounts and in the summary. A back-office
// deposit is notified as a movement too, a customer transfer only by its own notices.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import * as oidc from 'openid-client';

import { finishLogin, insecure, startLogin } from './lib/login.mjs';
import { startServer } from './lib/server.mjs';
import { eventually, notifyEnv, startSmsFake } from './lib/smsfake.mjs';
import { startSmtpSink } from './lib/smtpsink.mjs';
import { sqlite } from './lib/tools.mjs';

const PASSWORD = 'correct horse battery staple';
const ANA_PHONE = '+34600333444';
const BOB_PHONE = '+34600555666';

describe('internet banking end to end: login with OTP, summary, transfer, notices', () => {
    let srv;
    let sms;
    let sink;
    let spa;
    let anaAcct;
    let bobAcct;
    let token; // Ana's access token, from the login of the first test

    const admin = (method, path, body) => srv.request(method, path, { token: srv.adminToken, body });
    const run = (args, input) => {
        const r = srv.run(['admin', ...args, '--json'], { input });
        assert.equal(r.code, 0, r.stderr);
        return JSON.parse(r.stdout.trim().split('\n').pop());
    };
    // The code of the first SMS with a code to `phone` after its first `seen` messages (other
    // notices, such as movement notices, may arrive in between).
    const CODE_RE = /(?:c[oó]digo es|code is) (\d{6})/;
    const smsCode = async (phone, seen) => {
        const reqs = await sms.waitFor((all) => all.filter((q) => q.to === phone).slice(seen).some((q) => CODE_RE.test(q.body)));
        return CODE_RE.exec(reqs.filter((q) => q.to === phone).slice(seen).find((q) => CODE_RE.test(q.body)).body)[1];
    };
    const smsTo = (phone) => sms.requests.filter((q) => q.to === phone).length;

    before(async () => {
        sms = await startSmsFake();
        sink = await startSmtpSink();
        srv = await startServer({
            env: {
                BOVEDA_MFA_LOGIN_POLICY: 'all',
                ...notifyEnv({ smtp: { url: sink.url }, sms: { provider: 'webhook', url: sms.url } }),
            },
        });
        run(['demo-seed', '--password-stdin'], `${PASSWORD}\n`); // the SPA's public client boveda-web
        const ana = run(['users', 'create', '--username', 'ana', '--name', 'Ana Pérez', '--email', 'ana@example.com',
            '--phone', ANA_PHONE, '--password-stdin'], `${PASSWORD}\n`);
        const bob = run(['users', 'create', '--username', 'bob', '--name', 'Bob Ruiz', '--email', 'bob@example.com',
            '--phone', BOB_PHONE, '--password-stdin'], `${PASSWORD}\n`);
        const open = async (body) => {
            const r = await admin('POST', '/v1/accounts', body);
            assert.equal(r.status, 201, r.text);
            return r.json;
        };
        const cash = await open({ type: 'internal', currency: 'EUR', holder_name: 'Banco', allow_negative: true });
        anaAcct = await open({ type: 'checking', currency: 'EUR', holder_name: 'Ana Pérez', customer_id: ana.id });
        bobAcct = await open({ type: 'checking', currency: 'EUR', holder_name: 'Bob Ruiz', customer_id: bob.id });
        const f = await admin('POST', '/v1/ledger/transfers', { debit_account: cash.id, credit_account: anaAcct.id,
            amount: '500.00', currency: 'EUR', reference: 'fund-ana', description: 'Nómina' });
        assert.equal(f.status, 201, f.text);
        spa = await oidc.discovery(new URL(srv.url), 'boveda-web', undefined, oidc.None(), insecure);
    });
    after(async () => {
        try {
            if (srv?.running) await srv.stop();
        } finally {
            await sms?.close();
            await sink?.close();
        }
    });

    it('signs in with password + SMS code, transfers with an OTP, and tells both parties', { timeout: 120000 }, async () => {
        // 1. the login: password, then the code sent by SMS
        let seen = smsTo(ANA_PHONE);
        const login = await startLogin(spa, srv.url, { username: 'ana', password: PASSWORD,
            scope: 'openid profile banking:read banking:write' });
        assert.equal(login.response.status, 200, login.html);
        assert.equal(login.step, 'otp', 'a second step for every customer');
        const tokens = await finishLogin(spa, login, await smsCode(ANA_PHONE, seen));
        assert.ok(tokens.claims().amr.includes('otp'));
        assert.equal(tokens.claims().acr, 'urn:boveda:loa:2');
        token = tokens.access_token;
        const me = (method, path, opts = {}) => srv.request(method, path, { token, ...opts });

        // the back-office deposit was a movement too: Ana was told (account number masked)
        await sms.waitFor((all) => all.some((q) => q.to === ANA_PHONE && /movimiento de 500\.00 EUR en tu cuenta \*{4}\d{4}/.test(q.body)));
        assert.ok(!sms.requests.some((q) => q.body.includes(anaAcct.number)), 'the account number is masked');

        // 2. the summary: who I am, my balance and my last movements
        let s = await me('GET', '/v1/me/summary');
        assert.equal(s.status, 200, s.text);
        assert.equal(s.json.profile.username, 'ana');
        assert.equal(s.json.profile.display_name, 'Ana Pérez');
        const acct = s.json.accounts.find((a) => a.id === anaAcct.id);
        assert.equal(acct.balance, '500.00');
        assert.equal(acct.last_movements.length, 1);
        assert.equal(acct.last_movements[0].amount, '500.00');
        assert.equal(acct.last_movements[0].counterparty_name, 'Banco');
        assert.equal(s.json.accounts.length, 1, 'only her own accounts');

        // 3. a transfer to Bob, confirmed with the code sent by SMS
        seen = smsTo(ANA_PHONE);
        const c = await me('POST', '/v1/me/transfers', {
            headers: { 'idempotency-key': 'e2e-1' },
            body: { from_account: anaAcct.id, to_account_number: bobAcct.number, amount: '120.25', currency: 'EUR',
                description: 'Cena' },
        });
        assert.equal(c.status, 201, c.text);
        assert.equal(c.json.status, 'pending_confirmation');
        assert.equal(c.json.challenge.channel, 'sms');
        const code = await smsCode(ANA_PHONE, seen);
        const conf = await me('POST', `/v1/me/transfers/${c.json.id}/confirm`, { body: { code } });
        assert.equal(conf.status, 202, conf.text);
        assert.equal(conf.json.status, 'queued');

        // 4. it succeeds, exactly once
        const done = await eventually(async () => {
            const g = await me('GET', `/v1/me/transfers/${c.json.id}`);
            assert.equal(g.status, 200, g.text);
            return g.json.status === 'success' ? g.json : null;
        }, 30000, 'the transfer succeeded');
        const byRef = await admin('GET', `/v1/ledger/transfers?reference=${c.json.id}`);
        assert.equal(byRef.json.items.length, 1);
        assert.equal(byRef.json.items[0].id, done.core_transfer_id);

        // 5. both are told: SMS on the fake, e-mail on the sink
        await sms.waitFor((all) => all.some((q) => q.to === ANA_PHONE && /enviaste 120\.25 EUR/.test(q.body)) &&
            all.some((q) => q.to === BOB_PHONE && /recibiste 120\.25 EUR/.test(q.body)));
        const mails = await sink.waitFor((all) =>
            all.some((m) => m.to.includes('ana@example.com') && /enviaste 120\.25 EUR/i.test(m.text ?? '')) &&
            all.some((m) => m.to.includes('bob@example.com') && /recibiste 120\.25 EUR/i.test(m.text ?? '')));
        for (const m of mails.filter((x) => /120\.25/.test(x.text ?? ''))) {
            assert.ok(!m.text.includes(bobAcct.number) && !m.text.includes(anaAcct.number), 'account numbers masked');
        }
        await eventually(async () => (await me('GET', `/v1/me/transfers/${c.json.id}`)).json.notification_status === 'notified',
            20000, 'the transfer says notified');
        // a customer transfer is told once, by its own notices, not again as a ledger movement:
        // once the ledger's events have been handled (its queue empty), no movement notice
        await eventually(async () => {
            const m = (await admin('GET', '/metrics')).text;
            const v = (name) => Number(new RegExp(`^${name}\\{queue="movement-notices"\\} (\\d+)`, 'm').exec(m)?.[1] ?? -1);
            return v('boveda_queue_depth') === 0 && v('boveda_queue_in_flight') === 0;
        }, 20000, 'the ledger events handled');
        await sms.waitFor((all) => all.filter((q) => q.to === BOB_PHONE).length >= 1);
        assert.ok(!sms.requests.some((q) => /movimiento de -?120\.25/.test(q.body)), 'no second notice');
        assert.ok(!sink.messages.some((m) => /movimiento de -?120\.25/i.test(m.text ?? '')), 'no second e-mail');

        // 6. the movement on both accounts, and in the summary
        const mine = await me('GET', `/v1/me/accounts/${anaAcct.id}/movements`);
        assert.equal(mine.status, 200, mine.text);
        assert.equal(mine.json.items[0].amount, '-120.25');
        assert.equal(mine.json.items[0].counterparty.name, 'Bob Ruiz');
        const his = await admin('GET', `/v1/accounts/${bobAcct.id}/movements`);
        assert.equal(his.json.items[0].amount, '120.25');
        assert.equal(his.json.items[0].counterparty.name, 'Ana Pérez');
        s = await me('GET', '/v1/me/summary');
        const after = s.json.accounts.find((a) => a.id === anaAcct.id);
        assert.equal(after.balance, '379.75');
        assert.equal(after.last_movements[0].amount, '-120.25');
        assert.equal(after.last_movements[0].counterparty_name, 'Bob Ruiz');
        // Bob's account is not Ana's to read
        assert.equal((await me('GET', `/v1/me/accounts/${bobAcct.id}/movements`)).status, 404);
    });

    it('refuses a transfer once the one-time codes run out, leaving neither a transfer nor a code behind', { timeout: 60000 }, async () => {
        // BOVEDA_MFA_MAX_CHALLENGES_15MIN is 10: the login and the first transfer used two
        const me = (method, path, opts = {}) => srv.request(method, path, { token, ...opts });
        const order = (k) => me('POST', '/v1/me/transfers', {
            headers: { 'idempotency-key': `rate-${k}` },
            body: { from_account: anaAcct.id, to_account_number: bobAcct.number, amount: '1.00', currency: 'EUR' },
        });
        for (let k = 0; k < 8; k++) assert.equal((await order(k)).status, 201);
        await sms.waitFor((all) => all.filter((q) => q.to === ANA_PHONE && /c[oó]digo es/.test(q.body)).length >= 10);
        const codesBefore = sms.requests.filter((q) => q.to === ANA_PHONE && /c[oó]digo es/.test(q.body)).length;
        const refused = await order(8);
        assert.equal(refused.status, 429, refused.text);
        assert.equal(refused.json.type, 'https://boveda.dev/problems/otp-rate-limited');
        const list = await me('GET', '/v1/me/transfers?limit=100');
        assert.equal(list.json.items.length, 9, 'no transfer row for the refused order');
        // the code of a refused order is never sent (the challenge lives in the order's commit)
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(sms.requests.filter((q) => q.to === ANA_PHONE && /c[oó]digo es/.test(q.body)).length, codesBefore);
        // the same key later is a new order, not a replay of a refusal
        assert.equal((await order(8)).status, 429);
        // each refusal is audited (the order's job rolled back, mfa's record with it)
        assert.equal(sqlite(srv, "SELECT count(*) FROM audit_log WHERE action = 'transfers.transfer.create' " +
            "AND outcome = 'denied' AND details LIKE '%otp_rate_limited%'"), '2');
    });
});
