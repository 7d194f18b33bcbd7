// The customer banking API, read side (issue 8, docs/customer.md), black box: two customers
// with accounts and movements made by the back office; each reads their profile, summary,
// accounts and movements with their own access token, changes their notification
// preferences, and can never see the other's accounts (404, as for an unknown id).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { startServer } from './lib/server.mjs';
import { adminJson, assertProblem, basicAuth, sqlite } from './lib/tools.mjs';

const PASSWORD = 'correct horse battery staple';
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

describe('customer banking API (read side)', () => {
    let srv;
    let alice; // user records
    let bob;
    let tok = {}; // access tokens
    let acct = {}; // accounts by name
    let moves = []; // the transfers in creation order
    let seq = 0;

    const as = (token) => ({
        get: (p) => srv.request('GET', p, { token }),
        put: (p, body) => srv.request('PUT', p, { token, body }),
    });
    const ledger = (method, p, body, headers = {}) => srv.request(method, p, { body, headers, token: srv.adminToken });
    const open = async (body) => {
        const r = await ledger('POST', '/v1/accounts', body);
        assert.equal(r.status, 201, r.text);
        return r.json;
    };
    const transfer = async (from, to, amount, description) => {
        const r = await ledger('POST', '/v1/ledger/transfers', {
            debit_account: from.id, credit_account: to.id, amount, currency: 'EUR', description,
            reference: `cust-${++seq}`,
        });
        assert.equal(r.status, 201, r.text);
        moves.push(r.json);
        return r.json;
    };
    const passwordToken = async (client, username, scope) => {
        const r = await srv.request('POST', '/oauth2/token', {
            headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client) },
            body: new URLSearchParams({ grant_type: 'password', username, password: PASSWORD, scope }).toString(),
        });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.scope.split(' ').sort().join(' '), scope.split(' ').sort().join(' '));
        return r.json.access_token;
    };

    before(async () => {
        srv = await startServer({ env: { BOVEDA_MFA_LOGIN_POLICY: 'enrolled', BOVEDA_LOCALE: 'es' } });
        alice = adminJson(srv, ['users', 'create', '--username', 'alice', '--email', 'alice@example.test', '--phone',
            '+34600111222', '--name', 'Alice Example', '--password-stdin'], `${PASSWORD}\n`);
        bob = adminJson(srv, ['users', 'create', '--username', 'bob', '--email', 'bob@example.test', '--name',
            'Bob Example', '--password-stdin'], `${PASSWORD}\n`);
        const legacy = adminJson(srv, ['clients', 'create', '--name', 'legacy-app', '--grant', 'password', '--scope',
            'openid banking:read banking:write', '--legacy-password']);
        tok.alice = await passwordToken(legacy, 'alice', 'openid banking:read banking:write');
        tok.bob = await passwordToken(legacy, 'bob', 'openid banking:read banking:write');
        tok.aliceRead = await passwordToken(legacy, 'alice', 'openid banking:read');
        tok.aliceOpenid = await passwordToken(legacy, 'alice', 'openid');
        const svc = adminJson(srv, ['clients', 'create', '--name', 'svc', '--grant', 'client_credentials', '--scope',
            'banking:read']);
        const cc = await srv.request('POST', '/oauth2/token', {
            headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(svc) },
            body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'banking:read' }).toString(),
        });
        assert.equal(cc.status, 200, cc.text);
        tok.client = cc.json.access_token;

        acct.bank = await open({ type: 'internal', currency: 'EUR', holder_name: 'Bank funding', allow_negative: true });
        acct.aliceChecking = await open({ type: 'checking', currency: 'EUR', holder_name: 'Alice Example',
            customer_id: alice.id });
        acct.aliceSavings = await open({ type: 'savings', currency: 'EUR', holder_name: 'Alice Example',
            customer_id: alice.id });
        acct.bob = await open({ type: 'checking', currency: 'EUR', holder_name: 'Bob Example', customer_id: bob.id });
        await transfer(acct.bank, acct.aliceChecking, '1000.00', 'Initial deposit');
        for (let i = 1; i <= 5; i++) await transfer(acct.aliceChecking, acct.bob, `${i}0.00`, `Payment ${i}`);
        await transfer(acct.bob, acct.aliceChecking, '5.00', 'Refund');
        await transfer(acct.bank, acct.aliceSavings, '200.00', 'Savings deposit');
    });
    after(async () => {
        if (srv?.running) await srv.stop();
    });

    it('GET /v1/me returns the customer\'s own profile in full', async () => {
        const r = await as(tok.alice).get('/v1/me');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('cache-control'), 'no-store');
        assert.deepEqual(r.json, {
            id: alice.id, username: 'alice', display_name: 'Alice Example', email: 'alice@example.test',
            phone: '+34600111222', locale: 'es', notification_preferences: { channels: ['email', 'sms'], locale: 'es' },
        });
        const b = await as(tok.bob).get('/v1/me');
        assert.equal(b.status, 200, b.text);
        assert.equal(b.json.id, bob.id);
        assert.equal(b.json.phone, null);
        assert.deepEqual(b.json.notification_preferences.channels, ['email']); // no phone: no SMS
        // served from the cache the second time: the same answer
        const again = await as(tok.alice).get('/v1/me');
        assert.deepEqual(again.json, r.json);
    });

    it('GET /v1/me/summary: the profile, balances and exactly the last 4 movements newest first', async () => {
        const r = await as(tok.alice).get('/v1/me/summary');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('cache-control'), 'no-store');
        const me = await as(tok.alice).get('/v1/me');
        assert.deepEqual(r.json.profile, me.json);
        assert.equal(r.json.accounts.length, 2);
        const [chk, sav] = r.json.accounts;
        assert.deepEqual(Object.keys(chk).sort(), ['available', 'balance', 'currency', 'id', 'last_movements', 'number',
            'status', 'type']);
        assert.equal(chk.id, acct.aliceChecking.id);
        assert.equal(chk.number, acct.aliceChecking.number);
        assert.equal(chk.type, 'checking');
        assert.equal(chk.currency, 'EUR');
        assert.equal(chk.status, 'active');
        assert.equal(chk.balance, '855.00'); // 1000 - (10+20+30+40+50) + 5
        assert.equal(chk.available, '855.00');
        assert.equal(chk.last_movements.length, 4);
        assert.deepEqual(chk.last_movements.map((m) => m.amount), ['5.00', '-50.00', '-40.00', '-30.00']);
        assert.deepEqual(chk.last_movements.map((m) => m.counterparty_name), Array(4).fill('Bob Example'));
        assert.deepEqual(chk.last_movements.map((m) => m.description), ['Refund', 'Payment 5', 'Payment 4', 'Payment 3']);
        assert.deepEqual(chk.last_movements.map((m) => m.transfer_id), [moves[6].id, moves[5].id, moves[4].id, moves[3].id]);
        for (const m of chk.last_movements) assert.match(m.date, RFC3339);
        const dates = chk.last_movements.map((m) => Date.parse(m.date));
        assert.deepEqual([...dates].sort((a, b) => b - a), dates);
        assert.equal(sav.id, acct.aliceSavings.id);
        assert.equal(sav.balance, '200.00');
        assert.deepEqual(sav.last_movements.map((m) => [m.amount, m.counterparty_name, m.description]),
            [['200.00', 'Bank funding', 'Savings deposit']]);

        const b = await as(tok.bob).get('/v1/me/summary');
        assert.equal(b.status, 200, b.text);
        assert.deepEqual(b.json.accounts.map((a) => a.id), [acct.bob.id]);
        assert.equal(b.json.accounts[0].balance, '145.00');
        assert.deepEqual(b.json.accounts[0].last_movements.map((m) => [m.amount, m.counterparty_name]),
            [['-5.00', 'Alice Example'], ['50.00', 'Alice Example'], ['40.00', 'Alice Example'], ['30.00', 'Alice Example']]);
    });

    it('GET /v1/me/accounts lists only the caller\'s accounts', async () => {
        const r = await as(tok.alice).get('/v1/me/accounts');
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json.items.map((a) => a.id), [acct.aliceChecking.id, acct.aliceSavings.id]);
        const a = r.json.items[0];
        assert.equal(a.balance, '855.00');
        assert.equal(a.holder_name, 'Alice Example');
        assert.equal(a.holds, '0.00');
        assert.equal(a.overdraft_limit, '0.00');
        assert.match(a.created_at, RFC3339);
        assert.equal(a.customer_id, undefined); // bank-internal fields stay in the back office
        assert.equal(a.allow_negative, undefined);
        const one = await as(tok.alice).get(`/v1/me/accounts/${a.id}`);
        assert.equal(one.status, 200, one.text);
        assert.deepEqual(one.json, a);
        const b = await as(tok.bob).get('/v1/me/accounts');
        assert.deepEqual(b.json.items.map((x) => x.id), [acct.bob.id]);
    });

    it('GET /v1/me/accounts/{id}/movements: newest first, range and cursor pagination', async () => {
        const base = `/v1/me/accounts/${acct.aliceChecking.id}/movements`;
        const all = await as(tok.alice).get(base);
        assert.equal(all.status, 200, all.text);
        assert.equal(all.json.next_cursor, null);
        assert.deepEqual(all.json.items.map((m) => m.amount), ['5.00', '-50.00', '-40.00', '-30.00', '-20.00', '-10.00',
            '1000.00']);
        assert.deepEqual(all.json.items.map((m) => m.balance_after), ['855.00', '850.00', '900.00', '940.00', '970.00',
            '990.00', '1000.00']);
        const first = all.json.items[6];
        assert.equal(first.counterparty.name, 'Bank funding');
        assert.equal(first.counterparty.id, acct.bank.id);
        assert.equal(first.counterparty.number, acct.bank.number);
        assert.equal(first.transfer_id, moves[0].id);
        assert.match(first.created_at, RFC3339);

        // pages of 3 walk the same list
        const seen = [];
        let cursor = null;
        let pages = 0;
        do {
            const r = await as(tok.alice).get(`${base}?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
            assert.equal(r.status, 200, r.text);
            assert.ok(r.json.items.length <= 3);
            seen.push(...r.json.items);
            cursor = r.json.next_cursor;
            pages++;
        } while (cursor !== null && pages < 10);
        assert.equal(pages, 3);
        assert.deepEqual(seen, all.json.items);

        // [from, to): Payment 2 (moves[2]) up to, not including, Payment 5 (moves[5])
        const from = encodeURIComponent(moves[2].created_at);
        const to = encodeURIComponent(moves[5].created_at);
        const range = await as(tok.alice).get(`${base}?from=${from}&to=${to}`);
        assert.equal(range.status, 200, range.text);
        assert.deepEqual(range.json.items.map((m) => m.description), ['Payment 4', 'Payment 3', 'Payment 2']);

        assertProblem(await as(tok.alice).get(`${base}?limit=0`), 400, 'invalid-request', 'limit');
        assertProblem(await as(tok.alice).get(`${base}?limit=101`), 400, 'invalid-request', 'limit');
        assertProblem(await as(tok.alice).get(`${base}?from=yesterday`), 400, 'invalid-request', 'from');
        assertProblem(await as(tok.alice).get(`${base}?from=${to}&to=${from}`), 400, 'invalid-request', 'to');
        assertProblem(await as(tok.alice).get(`${base}?cursor=abc`), 400, 'invalid-request', 'cursor');
        const max = await as(tok.alice).get(`${base}?limit=100`);
        assert.equal(max.status, 200);
    });

    it('another customer\'s account ids answer 404 on every route, like unknown ids', async () => {
        const unknown = randomUUID();
        const routes = (id) => [`/v1/me/accounts/${id}`, `/v1/me/accounts/${id}/movements`,
            `/v1/me/accounts/${id}/movements?limit=1`];
        const shape = (r) => ({ status: r.status, type: r.json?.type, title: r.json?.title, detail: r.json?.detail,
            field: r.json?.field });
        for (const path of routes(unknown)) assertProblem(await as(tok.alice).get(path), 404, 'not-found');
        const reference = shape(await as(tok.alice).get(`/v1/me/accounts/${unknown}`));
        for (const [token, id] of [[tok.alice, acct.bob.id], [tok.bob, acct.aliceChecking.id],
            [tok.bob, acct.aliceSavings.id], [tok.alice, acct.bank.id], [tok.alice, 'not-a-uuid']]) {
            for (const path of routes(id)) {
                const r = await as(token).get(path);
                assertProblem(r, 404, 'not-found');
                assert.deepEqual(shape(r), reference, path);
                assert.ok(!r.text.includes('Bob Example') && !r.text.includes('Alice Example'));
            }
        }
        // and the owner still sees them
        assert.equal((await as(tok.bob).get(`/v1/me/accounts/${acct.bob.id}`)).status, 200);
    });

    describe('notification preferences', () => {
        const P = '/v1/me/notification-preferences';

        it('GET gives the default: every channel with a contact, the server locale', async () => {
            const a = await as(tok.alice).get(P);
            assert.equal(a.status, 200, a.text);
            assert.deepEqual(a.json, { channels: ['email', 'sms'], locale: 'es' });
            const b = await as(tok.bob).get(P);
            assert.deepEqual(b.json, { channels: ['email'], locale: 'es' });
        });

        it('rejects invalid preferences naming the field, changing nothing', async () => {
            const cases = [
                [tok.alice, { channels: [] }, 422, 'validation-failed', 'channels'],
                [tok.alice, { channels: ['fax'] }, 422, 'validation-failed', 'channels[0]'],
                [tok.alice, { channels: ['email', 'pigeon'] }, 422, 'validation-failed', 'channels[1]'],
                [tok.alice, { channels: ['sms', 'sms'] }, 422, 'validation-failed', 'channels[1]'],
                [tok.bob, { channels: ['sms'] }, 422, 'validation-failed', 'channels[0]'],
                [tok.bob, { channels: ['email', 'sms'] }, 422, 'validation-failed', 'channels[1]'],
                [tok.alice, { channels: [1] }, 400, 'invalid-request', 'channels[0]'],
                [tok.alice, { channels: 'email' }, 400, 'invalid-request', 'channels'],
                [tok.alice, { locale: 'en' }, 400, 'invalid-request', 'channels'],
                [tok.alice, { channels: ['email'], locale: 'fr' }, 400, 'invalid-request', 'locale'],
                [tok.alice, { channels: ['email'], colour: 'red' }, 400, 'invalid-request', 'colour'],
            ];
            for (const [token, body, status, slug, field] of cases) {
                assertProblem(await as(token).put(P, body), status, slug, field);
            }
            const sms = await as(tok.bob).put(P, { channels: ['sms'] });
            assert.match(sms.json.detail, /phone/);
            assert.deepEqual((await as(tok.alice).get(P)).json, { channels: ['email', 'sms'], locale: 'es' });
            assert.deepEqual((await as(tok.bob).get(P)).json, { channels: ['email'], locale: 'es' });
        });

        it('PUT stores valid preferences, audits the change and refreshes the cached profile', async () => {
            const before = await as(tok.alice).get('/v1/me'); // cached now
            assert.deepEqual(before.json.notification_preferences.channels, ['email', 'sms']);
            const r = await as(tok.alice).put(P, { channels: ['sms'], locale: 'en' });
            assert.equal(r.status, 200, r.text);
            assert.deepEqual(r.json, { channels: ['sms'], locale: 'en' });
            assert.deepEqual((await as(tok.alice).get(P)).json, { channels: ['sms'], locale: 'en' });
            const me = await as(tok.alice).get('/v1/me');
            assert.deepEqual(me.json.notification_preferences, { channels: ['sms'], locale: 'en' });
            assert.equal(me.json.locale, 'en');
            const sum = await as(tok.alice).get('/v1/me/summary');
            assert.deepEqual(sum.json.profile, me.json);

            // locale is optional on PUT: the current one is kept
            const r2 = await as(tok.alice).put(P, { channels: ['email', 'sms'] });
            assert.equal(r2.status, 200, r2.text);
            assert.deepEqual(r2.json, { channels: ['email', 'sms'], locale: 'en' });
            // the other customer is untouched
            assert.deepEqual((await as(tok.bob).get(P)).json, { channels: ['email'], locale: 'es' });

            const audit = await srv.request('GET', '/v1/audit/events?action=customer.preferences.update',
                { token: srv.adminToken });
            assert.equal(audit.status, 200, audit.text);
            const items = audit.json.items.sort((a, b) => a.seq - b.seq);
            assert.equal(items.length, 2);
            assert.equal(items[0].actor, `user:${alice.id}`);
            assert.equal(items[0].resource, `user:${alice.id}`);
            assert.equal(items[0].outcome, 'success');
            assert.deepEqual(items[0].details, { old_channels: ['email', 'sms'], new_channels: ['sms'],
                old_locale: 'es', new_locale: 'en', old_was_default: true });
            assert.deepEqual(items[1].details, { old_channels: ['sms'], new_channels: ['email', 'sms'],
                old_locale: 'en', new_locale: 'en', old_was_default: false });
        });
    });

    it('the profile is served from the cache until the entry is dropped', async () => {
        // a change behind the API's back (as another process would make it) ...
        const name = (await as(tok.bob).get('/v1/me')).json.display_name; // cached now
        sqlite(srv, `UPDATE identity_users SET display_name = 'Bob Renamed' WHERE id = '${bob.id}'`);
        assert.equal((await as(tok.bob).get('/v1/me')).json.display_name, name);
        // ... shows once a change of preferences drops the entry
        const r = await as(tok.bob).put('/v1/me/notification-preferences', { channels: ['email'] });
        assert.equal(r.status, 200, r.text);
        assert.equal((await as(tok.bob).get('/v1/me')).json.display_name, 'Bob Renamed');
        assert.equal((await as(tok.bob).get('/v1/me/summary')).json.profile.display_name, 'Bob Renamed');

        // a change of preferences checks the contacts against identity as it is now, not the cache
        assert.equal((await as(tok.alice).get('/v1/me')).json.phone, '+34600111222'); // cached
        sqlite(srv, `UPDATE identity_users SET phone = NULL WHERE id = '${alice.id}'`);
        assertProblem(await as(tok.alice).put('/v1/me/notification-preferences', { channels: ['sms'] }), 422,
            'validation-failed', 'channels[0]');
        const me = await as(tok.alice).get('/v1/me');
        assert.equal(me.json.phone, null);
        assert.deepEqual(me.json.notification_preferences.channels, ['email']); // stored sms no longer counts
    });

    describe('authorization', () => {
        const routes = ['/v1/me', '/v1/me/summary', '/v1/me/accounts', '/v1/me/notification-preferences'];

        it('without a token: 401', async () => {
            for (const p of routes) assertProblem(await srv.request('GET', p), 401, 'unauthenticated');
            const acctPath = `/v1/me/accounts/${randomUUID()}/movements`;
            assertProblem(await srv.request('GET', acctPath), 401, 'unauthenticated');
            assertProblem(await srv.request('PUT', '/v1/me/notification-preferences', { body: { channels: ['email'] } }),
                401, 'unauthenticated');
        });

        it('without the scope: 403', async () => {
            for (const p of routes) assertProblem(await as(tok.aliceOpenid).get(p), 403, 'forbidden');
            assertProblem(await as(tok.aliceRead).put('/v1/me/notification-preferences', { channels: ['email'] }), 403,
                'forbidden');
            assert.equal((await as(tok.aliceRead).get('/v1/me')).status, 200);
        });

        it('the admin token and a client\'s own token are not customers: 403', async () => {
            for (const token of [srv.adminToken, tok.client]) {
                for (const p of [...routes, `/v1/me/accounts/${acct.aliceChecking.id}`]) {
                    const r = await as(token).get(p);
                    assertProblem(r, 403, 'forbidden');
                    assert.match(r.json.detail, /for customers/); // not a scope problem: the wrong principal
                }
                const put = await as(token).put('/v1/me/notification-preferences', { channels: ['email'] });
                assertProblem(put, 403, 'forbidden');
            }
        });
    });
});

describe('customer API with the profile cache disabled (BOVEDA_PROFILE_CACHE_TTL_S=0)', () => {
    let srv;
    after(async () => {
        if (srv?.running) await srv.stop();
    });

    it('reads the profile fresh on every request', async () => {
        srv = await startServer({ env: { BOVEDA_MFA_LOGIN_POLICY: 'enrolled', BOVEDA_PROFILE_CACHE_TTL_S: '0' } });
        const u = adminJson(srv, ['users', 'create', '--username', 'carol', '--email', 'carol@example.test', '--name',
            'Carol', '--password-stdin'], `${PASSWORD}\n`);
        const legacy = adminJson(srv, ['clients', 'create', '--name', 'legacy-app', '--grant', 'password', '--scope',
            'openid banking:read', '--legacy-password']);
        const t = await srv.request('POST', '/oauth2/token', {
            headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(legacy) },
            body: new URLSearchParams({ grant_type: 'password', username: 'carol', password: PASSWORD,
                scope: 'openid banking:read' }).toString(),
        });
        assert.equal(t.status, 200, t.text);
        const token = t.json.access_token;
        const r = await srv.request('GET', '/v1/me', { token });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.display_name, 'Carol');
        sqlite(srv, `UPDATE identity_users SET display_name = 'Carol Renamed' WHERE id = '${u.id}'`);
        assert.equal((await srv.request('GET', '/v1/me', { token })).json.display_name, 'Carol Renamed');
        const s = await srv.request('GET', '/v1/me/summary', { token });
        assert.equal(s.status, 200, s.text);
        assert.deepEqual(s.json.accounts, []);
    });
});
