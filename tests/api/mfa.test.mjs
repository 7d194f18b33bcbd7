// MFA (issue 7), black box: OTP challenges delivered by SMS (read back from the SMS provider
// fake) and e-mail (SMTP sink), verified into single-use proofs bound to the operation; the
// negative cases (wrong code with attempts left, other operation, reuse, lock, rate limit,
// another user's challenge); TOTP enrolment, confirmation, replay and recovery codes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { PROBLEM_BASE, startServer } from './lib/server.mjs';
import { notifyEnv, runAsync, startSmsFake } from './lib/smsfake.mjs';
import { startSmtpSink } from './lib/smtpsink.mjs';
import { adminJson, base32Decode, sqlite, totp } from './lib/tools.mjs';

const PASSWORD = 'correct horse battery staple';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function userToken(srv, client, username) {
    const r = await srv.request('POST', '/oauth2/token', {
        headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'password', username, password: PASSWORD, scope: 'openid' }).toString(),
    });
    assert.equal(r.status, 200, r.text);
    return r.json.access_token;
}

const OP_A = { amount: '125.50', currency: 'EUR', source: 'ES0000000001', destination: 'ES0000000002' };
const OP_B = { ...OP_A, amount: '925.50' };

describe('OTP challenges and TOTP soft tokens', () => {
    let srv;
    let sms;
    let sink;
    let ana;
    let bob;
    let anaId;

    before(async () => {
        sms = await startSmsFake({ account: 'AC0123456789', token: 'tw-token-xyz' });
        sink = await startSmtpSink();
        srv = await startServer({
            env: {
                BOVEDA_MFA_MAX_CHALLENGES_15MIN: '8',
                BOVEDA_MFA_MAX_ATTEMPTS: '3',
                ...notifyEnv({
                    smtp: { url: sink.url },
                    sms: { provider: 'twilio', url: sms.url, account: 'AC0123456789', token: 'tw-token-xyz' },
                }),
            },
        });
        const u = adminJson(srv, ['users', 'create', '--username', 'ana', '--email', 'ana@example.com',
            '--phone', '+34600111222', '--password-stdin'], `${PASSWORD}\n`);
        anaId = u.id;
        adminJson(srv, ['users', 'create', '--username', 'bob', '--email', 'bob@example.com',
            '--phone', '+34600333444', '--password-stdin'], `${PASSWORD}\n`);
        const client = adminJson(srv, ['clients', 'create', '--name', 'legacy', '--grant', 'password', '--scope',
            'openid profile', '--legacy-password']);
        ana = await userToken(srv, client, 'ana');
        bob = await userToken(srv, client, 'bob');
    });
    after(async () => {
        try {
            await srv?.stop();
        } finally {
            await sms?.close();
            await sink?.close();
        }
    });

    /** Creates an SMS challenge and returns it with the code the SMS carried. */
    async function smsChallenge(token, body, phone = '+34600111222') {
        const before = sms.requests.length;
        const r = await srv.request('POST', '/v1/otp/challenges', { token, body });
        assert.equal(r.status, 201, r.text);
        const reqs = await sms.waitFor((all) => all.slice(before).some((q) => q.to === phone));
        const msg = reqs.slice(before).find((q) => q.to === phone);
        const code = /(\d{6})/.exec(msg.body)?.[1];
        assert.ok(code, `a 6-digit code in the SMS: ${msg.body}`);
        return { ch: r.json, code };
    }

    it('binds an SMS code to the transfer and yields a single-use proof', { timeout: 60000 }, async () => {
        const { ch, code } = await smsChallenge(ana, { purpose: 'transfer', channel: 'sms', operation: OP_A });
        assert.match(ch.id, UUID);
        assert.equal(ch.purpose, 'transfer');
        assert.equal(ch.channel, 'sms');
        assert.match(ch.binding, /^[0-9a-f]{64}$/);
        const ttl = Date.parse(ch.expires_at) - Date.now();
        assert.ok(ttl > 150000 && ttl <= 180000, `expires in about 180 s (${ttl} ms)`);
        assert.ok(!JSON.stringify(ch).includes(code), 'the code is not in the response');

        // the right code for another operation does not verify, and costs an attempt
        const other = await srv.request('POST', `/v1/otp/challenges/${ch.id}/verify`, { token: ana, body: { code, operation: OP_B } });
        assert.equal(other.status, 422);
        assert.equal(other.json.type, `${PROBLEM_BASE}otp-invalid`);
        assert.equal(other.json.attempts_left, 2);
        // another user's challenge does not exist for them
        const foreign = await srv.request('POST', `/v1/otp/challenges/${ch.id}/verify`, { token: bob, body: { code, operation: OP_A } });
        assert.equal(foreign.status, 404);

        const ok = await srv.request('POST', `/v1/otp/challenges/${ch.id}/verify`, { token: ana, body: { code, operation: OP_A } });
        assert.equal(ok.status, 200, ok.text);
        assert.match(ok.json.proof, /^mfp_[A-Za-z0-9_-]{43}$/);
        assert.equal(ok.json.purpose, 'transfer');
        const left = Date.parse(ok.json.expires_at) - Date.now();
        assert.ok(left > 0 && left <= 60000, `proof lives 60 s (${left} ms)`);
        assert.match(ok.headers['cache-control'] ?? '', /no-store/);

        const again = await srv.request('POST', `/v1/otp/challenges/${ch.id}/verify`, { token: ana, body: { code, operation: OP_A } });
        assert.equal(again.status, 422);
        assert.equal(again.json.type, `${PROBLEM_BASE}otp-used`);

        // nothing stored or audited holds the code or the proof in clear
        const dump = sqlite(srv, "SELECT group_concat(details, ' ') FROM audit_log WHERE action LIKE 'mfa.%'");
        assert.match(dump, /"bound":true/);
        assert.ok(!dump.includes(code) && !dump.includes(ok.json.proof));
        assert.equal(sqlite(srv, `SELECT count(*) FROM audit_log WHERE action = 'mfa.challenge.verify' AND resource = 'mfa_challenge:${ch.id}'`), '2');
        assert.equal(sqlite(srv, `SELECT count(*) FROM mfa_proofs WHERE challenge_id = '${ch.id}' AND binding IS NOT NULL`), '1');
        assert.ok(!srv.stderr.includes(`"${code}"`) && !srv.stderr.includes(ok.json.proof), 'neither code nor proof in the logs');
    });

    it('locks a challenge after the allowed wrong codes', { timeout: 60000 }, async () => {
        const { ch, code } = await smsChallenge(bob, { purpose: 'login', channel: 'sms' }, '+34600333444');
        const wrong = code === '000000' ? '000001' : '000000';
        const v = (c) => srv.request('POST', `/v1/otp/challenges/${ch.id}/verify`, { token: bob, body: { code: c } });
        let r = await v(wrong);
        assert.equal(r.json.attempts_left, 2);
        r = await v(wrong);
        assert.equal(r.json.attempts_left, 1);
        r = await v(wrong);
        assert.equal(r.status, 422);
        assert.equal(r.json.type, `${PROBLEM_BASE}otp-locked`);
        r = await v(code);
        assert.equal(r.json.type, `${PROBLEM_BASE}otp-locked`, 'dead even for the right code');
        assert.equal(sqlite(srv, `SELECT count(*) FROM audit_log WHERE action = 'mfa.challenge.lock' AND resource = 'mfa_challenge:${ch.id}'`), '1');
    });

    it('delivers by e-mail and validates its input', { timeout: 60000 }, async () => {
        const before = sink.messages.length;
        const r = await srv.request('POST', '/v1/otp/challenges', { token: ana, body: { purpose: 'profile_change', channel: 'email' } });
        assert.equal(r.status, 201, r.text);
        assert.equal(r.json.binding, undefined);
        const msgs = await sink.waitFor((m) => m.length > before);
        const code = /(\d{6})/.exec(msgs[before].text)?.[1];
        assert.deepEqual(msgs[before].to, ['ana@example.com']);
        const ok = await srv.request('POST', `/v1/otp/challenges/${r.json.id}/verify`, { token: ana, body: { code } });
        assert.equal(ok.status, 200, ok.text);

        const bad = async (body, field) => {
            const x = await srv.request('POST', '/v1/otp/challenges', { token: ana, body });
            assert.equal(x.status, 400, x.text);
            assert.equal(x.json.field, field);
        };
        await bad({ purpose: 'transfer', channel: 'sms' }, 'operation');
        await bad({ purpose: 'shopping', channel: 'sms' }, 'purpose');
        await bad({ purpose: 'login', channel: 'pigeon' }, 'channel');
        await bad({ purpose: 'transfer', channel: 'sms', operation: { ...OP_A, amount: '1.234' } }, 'operation.amount');
        await bad({ purpose: 'transfer', channel: 'sms', operation: { ...OP_A, currency: 'ZZZ' } }, 'operation.currency');
        await bad({ purpose: 'login', channel: 'totp' }, 'channel'); // no soft token yet
        const unknown = await srv.request('POST', '/v1/otp/challenges/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/verify', { token: ana, body: { code: '123456' } });
        assert.equal(unknown.status, 404);
        const anon = await srv.request('POST', '/v1/otp/challenges', { body: { purpose: 'login', channel: 'sms' } });
        assert.equal(anon.status, 401);
        const adminCall = await srv.request('POST', '/v1/otp/challenges', { token: srv.adminToken, body: { purpose: 'login', channel: 'sms' } });
        assert.equal(adminCall.status, 403, 'only a customer has challenges of their own');
    });

    it('rate-limits challenges per user per 15 minutes', { timeout: 60000 }, async () => {
        // bob made 1 challenge above; the limit is 8
        const statuses = [];
        for (let i = 0; i < 8; i++) {
            const r = await srv.request('POST', '/v1/otp/challenges', { token: bob, body: { purpose: 'login', channel: 'email' } });
            statuses.push(r.status);
            if (r.status === 429) assert.equal(r.json.type, `${PROBLEM_BASE}otp-rate-limited`);
        }
        assert.deepEqual(statuses, [201, 201, 201, 201, 201, 201, 201, 429]);
        const other = await srv.request('POST', '/v1/otp/challenges', { token: ana, body: { purpose: 'login', channel: 'email' } });
        assert.equal(other.status, 201, 'per user');
    });

    it('enrols a TOTP soft token, confirms it, refuses replays and spends recovery codes once', { timeout: 60000 }, async () => {
        const e = await srv.request('POST', '/v1/me/totp', { token: ana });
        assert.equal(e.status, 201, e.text);
        assert.equal(e.json.status, 'pending');
        assert.match(e.json.otpauth_uri, /^otpauth:\/\/totp\/Boveda:ana\?secret=[A-Z2-7]{32}&issuer=Boveda&algorithm=SHA1&digits=6&period=30$/);
        assert.match(e.json.qr_svg, /^<\?xml|^<svg/);
        assert.equal(e.json.recovery_codes.length, 10);
        assert.equal(new Set(e.json.recovery_codes).size, 10);
        const seed = base32Decode(e.json.secret);
        assert.equal(seed.length, 20);
        // only the ciphertext is stored
        const stored = sqlite(srv, `SELECT hex(seed) FROM mfa_totp WHERE user_id = '${anaId}'`);
        assert.ok(!stored.includes(seed.toString('hex').toUpperCase()));

        const now = Date.now() / 1000;
        const c0 = totp(seed, now);
        const wrong = c0 === '000000' ? '000001' : '000000';
        let r = await srv.request('POST', '/v1/me/totp/confirm', { token: ana, body: { code: wrong } });
        assert.equal(r.json?.type, `${PROBLEM_BASE}otp-invalid`);
        r = await srv.request('POST', '/v1/me/totp/confirm', { token: ana, body: { code: c0 } });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.status, 'active');
        r = await srv.request('POST', '/v1/me/totp', { token: ana });
        assert.equal(r.status, 401, 'replacing the active token needs a step-up (mfa_stepup.test.mjs)');
        assert.equal(r.json.type, `${PROBLEM_BASE}step-up-required`);
        assert.equal(r.json.challenge.channel, 'totp');

        const challenge = async () => {
            const x = await srv.request('POST', '/v1/otp/challenges', { token: ana, body: { purpose: 'login', channel: 'totp' } });
            assert.equal(x.status, 201, x.text);
            return x.json.id;
        };
        const verify = (id, code) => srv.request('POST', `/v1/otp/challenges/${id}/verify`, { token: ana, body: { code } });
        let id = await challenge();
        r = await verify(id, c0); // the confirmation's step again: replay
        assert.equal(r.json.type, `${PROBLEM_BASE}otp-invalid`);
        r = await verify(id, totp(seed, now + 30)); // one step of drift ahead
        assert.equal(r.status, 200, r.text);
        id = await challenge();
        r = await verify(id, totp(seed, now + 30)); // the same code twice
        assert.equal(r.json.type, `${PROBLEM_BASE}otp-invalid`);
        r = await verify(id, e.json.recovery_codes[3]);
        assert.equal(r.status, 200, r.text);
        id = await challenge();
        r = await verify(id, e.json.recovery_codes[3]);
        assert.equal(r.json.type, `${PROBLEM_BASE}otp-invalid`, 'a recovery code works once');

        // revoking the active token: step-up, answered here with a recovery code
        r = await srv.request('DELETE', '/v1/me/totp', { token: ana });
        assert.equal(r.status, 401);
        const su = r.json;
        r = await srv.request('POST', `/v1/otp/challenges/${su.challenge.id}/verify`, {
            token: ana, body: { code: e.json.recovery_codes[5], binding: su.challenge.binding },
        });
        assert.equal(r.status, 200, r.text);
        r = await srv.request('DELETE', '/v1/me/totp', { token: ana, headers: { 'mfa-proof': r.json.proof } });
        assert.equal(r.status, 204, r.text);
        r = await srv.request('DELETE', '/v1/me/totp', { token: ana });
        assert.equal(r.status, 404);
        const actions = sqlite(srv, `SELECT group_concat(action, ',') FROM audit_log WHERE actor = 'user:${anaId}' AND action LIKE 'mfa.totp.%'`);
        assert.equal(actions, 'mfa.totp.enrol,mfa.totp.confirm,mfa.totp.confirm,mfa.totp.revoke');
        const dump = sqlite(srv, "SELECT group_concat(details, ' ') FROM audit_log");
        assert.ok(!dump.includes(e.json.secret) && !dump.includes(e.json.recovery_codes[0]));
    });
});
