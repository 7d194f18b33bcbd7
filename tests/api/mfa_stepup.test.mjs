// MFA step-up and soft-token maintenance (issue 7), black box: revoking or replacing an
// active soft token needs a fresh second factor bound to exactly that request (401
// step-up-required with a challenge, RFC 9470 style; verify -> proof; repeat with
// MFA-Proof); a proof for another operation, a reused or a malformed proof is refused.
// SHA-256 soft tokens (BOVEDA_MFA_TOTP_ALGORITHM) and resynchronisation with two
// consecutive codes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { PROBLEM_BASE, startServer } from './lib/server.mjs';
import { adminJson, base32Decode, sqlite, totp } from './lib/tools.mjs';

const PASSWORD = 'correct horse battery staple';

describe('step-up for the soft token routes, SHA-256 tokens, resynchronisation', () => {
    let srv;
    let client;
    const ids = {};

    before(async () => {
        srv = await startServer({ env: { BOVEDA_MFA_TOTP_ALGORITHM: 'sha256' } });
        for (const u of ['ana', 'bob']) {
            ids[u] = adminJson(srv, ['users', 'create', '--username', u, '--email', `${u}@example.com`, '--password-stdin'],
                `${PASSWORD}\n`).id;
        }
        client = adminJson(srv, ['clients', 'create', '--name', 'legacy', '--grant', 'password', '--scope', 'openid',
            '--legacy-password']);
    });
    after(async () => {
        if (srv?.running) await srv.stop();
    });

    async function userToken(username) {
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

    /** Enrols and confirms a SHA-256 soft token; returns {seed, at, recovery}. */
    async function activeToken(token) {
        const e = await srv.request('POST', '/v1/me/totp', { token });
        assert.equal(e.status, 201, e.text);
        assert.equal(e.json.algorithm, 'SHA256');
        assert.match(e.json.otpauth_uri, /&algorithm=SHA256&digits=6&period=30$/);
        const seed = base32Decode(e.json.secret);
        assert.equal(seed.length, 32, 'a 256-bit seed for SHA-256');
        const at = Date.now() / 1000;
        const c = await srv.request('POST', '/v1/me/totp/confirm', { token, body: { code: totp(seed, at, 'sha256') } });
        assert.equal(c.status, 200, c.text);
        return { seed, at, recovery: e.json.recovery_codes };
    }

    const stepUpShape = (r, purpose = 'device_enrolment') => {
        assert.equal(r.status, 401, r.text);
        assert.equal(r.json.type, `${PROBLEM_BASE}step-up-required`);
        assert.match(r.headers['www-authenticate'] ?? '', /^Bearer .*error="insufficient_user_authentication"/);
        assert.equal(r.json.challenge.purpose, purpose);
        assert.equal(r.json.challenge.channel, 'totp', 'the active soft token answers');
        assert.match(r.json.challenge.binding, /^[0-9a-f]{64}$/);
        assert.equal(r.json.verify.href, `/v1/otp/challenges/${r.json.challenge.id}/verify`);
        assert.equal(r.json.proof_header, 'MFA-Proof');
        assert.ok(Date.parse(r.json.challenge.expires_at) > Date.now());
        return r.json;
    };

    it('asks for a fresh factor bound to the request and accepts only the right proof once', { timeout: 60000 }, async () => {
        const token = await userToken('ana');
        const { seed, at, recovery } = await activeToken(token);
        const active = () => sqlite(srv, `SELECT count(*) FROM mfa_totp WHERE user_id = '${ids.ana}' AND status = 'active'`);

        // revoke without a proof: 401 with a challenge
        const d1 = stepUpShape(await srv.request('DELETE', '/v1/me/totp', { token }));
        assert.equal(d1.proof_error, undefined);
        // a replacement enrolment is another operation: another binding
        const r1 = stepUpShape(await srv.request('POST', '/v1/me/totp', { token }));
        assert.notEqual(r1.challenge.binding, d1.challenge.binding);

        // the verification must name the same binding
        let v = await srv.request('POST', d1.verify.href, { token, body: { code: totp(seed, at + 30, 'sha256') } });
        assert.equal(v.status, 422);
        assert.equal(v.json.type, `${PROBLEM_BASE}otp-invalid`);
        v = await srv.request('POST', d1.verify.href, { token, body: { code: totp(seed, at + 30, 'sha256'), binding: d1.challenge.binding } });
        assert.equal(v.status, 200, v.text);
        const revokeProof = v.json.proof;
        v = await srv.request('POST', r1.verify.href, { token, body: { code: recovery[0], binding: r1.challenge.binding } });
        assert.equal(v.status, 200, v.text);
        const replaceProof = v.json.proof;

        // a proof for another operation is refused with a fresh challenge, nothing happens
        let r = await srv.request('DELETE', '/v1/me/totp', { token, headers: { 'mfa-proof': replaceProof } });
        const again = stepUpShape(r);
        assert.equal(again.proof_error, 'otp-invalid');
        assert.notEqual(again.challenge.id, d1.challenge.id);
        assert.equal(active(), '1');
        // a malformed proof likewise
        r = await srv.request('DELETE', '/v1/me/totp', { token, headers: { 'mfa-proof': 'mfp_short' } });
        assert.equal(stepUpShape(r).proof_error, 'otp-invalid');

        // the right proof: the token goes
        r = await srv.request('DELETE', '/v1/me/totp', { token, headers: { 'mfa-proof': revokeProof } });
        assert.equal(r.status, 204, r.text);
        assert.equal(active(), '0');
        const used = sqlite(srv, `SELECT count(*) FROM mfa_proofs WHERE user_id = '${ids.ana}' AND used_at IS NOT NULL`);
        assert.equal(used, '1');

        // a new token, and the spent proof again: refused (spent, and bound to the old token)
        const second = await activeToken(token);
        r = await srv.request('DELETE', '/v1/me/totp', { token, headers: { 'mfa-proof': revokeProof } });
        assert.match(stepUpShape(r).proof_error, /^otp-(used|invalid)$/);
        assert.equal(active(), '1');

        // replacing the new active token with its own step-up
        const rp = stepUpShape(await srv.request('POST', '/v1/me/totp', { token }));
        v = await srv.request('POST', rp.verify.href, { token, body: { code: second.recovery[1], binding: rp.challenge.binding } });
        assert.equal(v.status, 200, v.text);
        r = await srv.request('POST', '/v1/me/totp', { token, headers: { 'mfa-proof': v.json.proof } });
        assert.equal(r.status, 201, r.text);
        assert.equal(r.json.status, 'pending');
        assert.equal(active(), '0', 'the replaced token is gone, the new one pending');
        // the first replace proof was bound to the first token: useless now
        assert.equal(sqlite(srv, `SELECT count(*) FROM mfa_proofs WHERE user_id = '${ids.ana}' AND used_at IS NULL`), '1');
        assert.notEqual(replaceProof, v.json.proof);

        const audit = sqlite(srv, `SELECT group_concat(action || ':' || outcome, ',') FROM audit_log WHERE actor = 'user:${ids.ana}' AND action IN ('mfa.totp.revoke', 'mfa.totp.enrol')`);
        assert.equal(audit, 'mfa.totp.enrol:success,mfa.totp.revoke:success,mfa.totp.enrol:success,mfa.totp.enrol:success');
        const details = sqlite(srv, `SELECT group_concat(details, ' ') FROM audit_log WHERE actor = 'user:${ids.ana}' AND action IN ('mfa.totp.revoke', 'mfa.totp.enrol')`);
        assert.match(details, /"step_up":true/);
        assert.match(details, /"algorithm":"SHA256"/);
        assert.ok(!details.includes(revokeProof));
        const refused = sqlite(srv, `SELECT group_concat(json_extract(details, '$.reason'), ',') FROM audit_log WHERE actor = 'user:${ids.ana}' AND action = 'mfa.proof.refuse' AND outcome = 'denied'`);
        assert.match(refused, /^otp-invalid,otp-invalid,otp-(used|invalid)$/);
    });

    it('resynchronises a drifted soft token with two consecutive codes', { timeout: 60000 }, async () => {
        const token = await userToken('bob');
        const { seed } = await activeToken(token);
        const now = Date.now() / 1000;
        const ahead = (steps) => totp(seed, now + steps * 30, 'sha256'); // a device clock running 6 steps ahead

        // its codes are outside the ±1 step window
        let ch = await srv.request('POST', '/v1/otp/challenges', { token, body: { purpose: 'login', channel: 'totp' } });
        assert.equal(ch.status, 201, ch.text);
        let v = await srv.request('POST', `/v1/otp/challenges/${ch.json.id}/verify`, { token, body: { code: ahead(6) } });
        assert.equal(v.json.type, `${PROBLEM_BASE}otp-invalid`);

        // two codes that are not consecutive do not resynchronise
        let r = await srv.request('POST', '/v1/me/totp/resync', { token, body: { code1: ahead(5), code2: ahead(7) } });
        assert.equal(r.status, 422);
        assert.equal(r.json.type, `${PROBLEM_BASE}otp-invalid`);
        r = await srv.request('POST', '/v1/me/totp/resync', { token, body: { code1: ahead(5) } });
        assert.equal(r.status, 400);
        assert.equal(r.json.field, 'code2');

        r = await srv.request('POST', '/v1/me/totp/resync', { token, body: { code1: ahead(5), code2: ahead(6) } });
        assert.equal(r.status, 200, r.text);
        assert.ok([5, 6].includes(r.json.drift_steps), `drift ${r.json.drift_steps}`);
        // the same pair again is a replay
        r = await srv.request('POST', '/v1/me/totp/resync', { token, body: { code1: ahead(5), code2: ahead(6) } });
        assert.equal(r.status, 422);

        // the device's next code now verifies; the one before (already used) does not
        ch = await srv.request('POST', '/v1/otp/challenges', { token, body: { purpose: 'login', channel: 'totp' } });
        v = await srv.request('POST', `/v1/otp/challenges/${ch.json.id}/verify`, { token, body: { code: ahead(6) } });
        assert.equal(v.json.type, `${PROBLEM_BASE}otp-invalid`, 'replay after resync');
        v = await srv.request('POST', `/v1/otp/challenges/${ch.json.id}/verify`, { token, body: { code: ahead(7) } });
        assert.equal(v.status, 200, v.text);
        const rows = sqlite(srv, `SELECT action || ':' || outcome FROM audit_log WHERE actor = 'user:${ids.bob}' AND action = 'mfa.totp.resync' ORDER BY seq`);
        assert.deepEqual(rows.split('\n'), ['mfa.totp.resync:invalid', 'mfa.totp.resync:success', 'mfa.totp.resync:invalid']);
    });
});
