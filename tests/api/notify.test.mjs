// Notifications (issue 6), black box: real SMTP on loopback (smtp-server, with STARTTLS and
// AUTH), an SMS provider fake (Twilio shape and JSON webhook) that can answer 200, 429 with
// Retry-After, 500 or hang; `boveda admin notify test|log|replay`, the delivery log over
// HTTP, failover to the secondary provider, permanent failures to the `analysis` queue.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { generateCert, makeTempDir, PROBLEM_BASE, randomToken, startServer } from './lib/server.mjs';
import { eventually, notifyEnv, runAsync, startSmsFake } from './lib/smsfake.mjs';
import { startSmtpSink } from './lib/smtpsink.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('boveda admin notify test: each channel through the real queues', () => {
    let sink;
    let sms;
    let tls;
    before(async () => {
        tls = generateCert();
        sink = await startSmtpSink({ tls, auth: { user: 'mailer', pass: 's3cret-pass' } });
        sms = await startSmsFake({ account: 'AC0123456789', token: 'tw-token-xyz' });
    });
    after(async () => {
        await sink?.close();
        await sms?.close();
    });

    it('delivers an e-mail over STARTTLS with AUTH and a Twilio-shaped SMS, and logs both', { timeout: 60000 }, async () => {
        const env = {
            BOVEDA_DATA_DIR: makeTempDir(),
            BOVEDA_ADMIN_TOKEN: randomToken(),
            BOVEDA_LOG_LEVEL: 'warn',
            ...notifyEnv({
                smtp: { url: sink.url, user: 'mailer', pass: 's3cret-pass', starttls: 'required', ca: tls.cert },
                sms: { provider: 'twilio', url: sms.url, account: 'AC0123456789', token: 'tw-token-xyz' },
            }),
        };
        const r = await runAsync(env, ['admin', 'notify', 'test', '--email', 'ana@example.com', '--phone', '+34600111222', '--json']);
        assert.equal(r.code, 0, `exit ${r.code}; stdout ${r.stdout}; stderr ${r.stderr}`);
        assert.equal(r.json.ok, true);
        assert.match(r.json.id, UUID);
        const byChannel = Object.fromEntries(r.json.channels.map((c) => [c.channel, c]));
        assert.equal(byChannel.email.status, 'delivered');
        assert.equal(byChannel.email.provider, 'smtp-primary');
        assert.equal(byChannel.sms.status, 'delivered');
        assert.equal(byChannel.sms.provider, 'sms-primary');

        // the e-mail, as the SMTP server received it
        assert.equal(sink.messages.length, 1);
        const m = sink.messages[0];
        assert.equal(m.secure, true, 'STARTTLS was used');
        assert.equal(m.user, 'mailer', 'AUTH was used');
        assert.equal(m.from, 'bank@example.com');
        assert.deepEqual(m.to, ['ana@example.com']);
        assert.match(m.headers['content-type'], /^multipart\/alternative/);
        assert.match(m.subject, /mensaje de prueba/i); // Spanish by default
        assert.match(m.text, /prueba/);
        assert.match(m.html, /<p>/);
        assert.equal(m.headers['message-id'], `<${byChannel.email.provider_message_id}>`);

        // the SMS, as the provider received it
        assert.equal(sms.requests.length, 1);
        const s = sms.requests[0];
        assert.equal(s.shape, 'twilio');
        assert.equal(s.sid, 'AC0123456789');
        assert.equal(s.auth, 'AC0123456789:tw-token-xyz');
        assert.equal(s.contentType, 'application/x-www-form-urlencoded');
        assert.equal(s.to, '+34600111222');
        assert.equal(s.from, '+15550001111');
        assert.match(s.body, /prueba/);
        assert.equal(byChannel.sms.provider_message_id, s.providerId);

        // the delivery log from the CLI, and nothing secret in the process output
        const log = await runAsync(env, ['admin', 'notify', 'log', r.json.id]);
        assert.equal(log.code, 0, log.stderr);
        assert.match(log.stdout, /email\s+delivered/);
        assert.match(log.stdout, /sms\s+delivered/);
        assert.ok(!r.stderr.includes('s3cret-pass') && !r.stderr.includes('tw-token-xyz'), 'no credentials in logs');
        assert.ok(!r.stderr.includes(s.body), 'no message bodies in logs');
    });

    it('refuses a bad phone number and a channel that is not configured', async () => {
        const env = { BOVEDA_DATA_DIR: makeTempDir(), BOVEDA_LOG_LEVEL: 'warn', ...notifyEnv({ sms: { provider: 'webhook', url: sms.url } }) };
        const bad = await runAsync(env, ['admin', 'notify', 'test', '--phone', '600111222']);
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /E\.164/);
        const noMail = await runAsync(env, ['admin', 'notify', 'test', '--email', 'a@example.com']);
        assert.equal(noMail.code, 1);
        assert.match(noMail.stderr, /BOVEDA_SMTP_URL/);
    });

    it('fails start-up with one line naming a bad setting', async () => {
        const env = { BOVEDA_DATA_DIR: makeTempDir(), BOVEDA_SMS_PROVIDER: 'pigeon', BOVEDA_SMS_URL: 'http://127.0.0.1:9' };
        const r = await runAsync(env, ['admin', 'queues', 'list']);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /BOVEDA_SMS_PROVIDER: must be twilio or webhook/);
    });
});

describe('notifications while serving: failover, rate limits, permanent failures, replay, delivery log', () => {
    let srv;
    let smsA; // primary (webhook)
    let smsB; // secondary (webhook)
    let sink;
    const publish = async (args) => {
        const r = await runAsync(srv.env, ['admin', 'notify', 'test', '--no-wait', '--json', ...args]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.json.id, UUID);
        return r.json.id;
    };
    const deliveries = async (id) => {
        const r = await srv.request('GET', `/v1/notifications/${id}/deliveries`, { token: srv.adminToken });
        assert.equal(r.status, 200, r.text);
        return r.json;
    };
    const settled = (id, channel) =>
        eventually(async () => {
            const d = await deliveries(id);
            const c = d.channels.find((x) => x.channel === channel);
            return c && ['delivered', 'failed'].includes(c.status) ? d : null;
        }, 30000, `${channel} of ${id} settled`);

    before(async () => {
        smsA = await startSmsFake();
        smsB = await startSmsFake();
        sink = await startSmtpSink();
        const closedPort = 'smtp://127.0.0.1:1'; // nothing listens: connection refused
        srv = await startServer({
            env: notifyEnv({
                smtp: { url: closedPort },
                smtpSecondary: { url: sink.url },
                sms: { provider: 'webhook', url: smsA.url, token: 'hook-token' },
                smsSecondary: { provider: 'webhook', url: smsB.url, from: 'Boveda' },
                extra: { BOVEDA_NOTIFY_FAILOVER_AFTER: '1', BOVEDA_NOTIFY_COOLDOWN_S: '2', BOVEDA_LOCALE: 'en' },
            }),
        });
    });
    after(async () => {
        if (srv?.running) await srv.stop();
        await smsA?.close();
        await smsB?.close();
        await sink?.close();
    });

    it('fails over to the secondary SMS provider when the primary fails', { timeout: 60000 }, async () => {
        smsA.mode = { status: 500 };
        const id = await publish(['--phone', '+34600111222']);
        const d = await settled(id, 'sms');
        const sms = d.channels.find((c) => c.channel === 'sms');
        assert.equal(sms.status, 'delivered');
        assert.equal(sms.provider, 'sms-secondary');
        const attempts = d.attempts.filter((a) => a.channel === 'sms');
        assert.deepEqual(attempts.map((a) => [a.provider, a.status]), [['sms-primary', 'retry'], ['sms-secondary', 'sent']]);
        assert.equal(attempts[0].error, 'http 500');
        assert.equal(smsB.requests.length, 1);
        assert.equal(smsB.requests[0].shape, 'webhook');
        assert.equal(smsB.requests[0].from, 'Boveda');
        assert.match(smsB.requests[0].body, /test message/); // BOVEDA_LOCALE=en
        assert.equal(smsB.requests[0].id.startsWith(id), true);
        assert.equal(smsA.requests[0].auth, 'Bearer hook-token');
        assert.equal(sms.provider_message_id, smsB.requests[0].providerId);
    });

    it('fails over to the secondary SMTP server when the primary is down', { timeout: 60000 }, async () => {
        const id = await publish(['--email', 'bo@example.com']);
        const d = await settled(id, 'email');
        const email = d.channels.find((c) => c.channel === 'email');
        assert.equal(email.status, 'delivered');
        assert.equal(email.provider, 'smtp-secondary');
        assert.equal(sink.messages.length, 1);
        assert.deepEqual(sink.messages[0].to, ['bo@example.com']);
        assert.match(sink.messages[0].subject, /test message/);
    });

    it('honours 429 Retry-After and then delivers', { timeout: 60000 }, async () => {
        await new Promise((r) => setTimeout(r, 2100)); // the primary's circuit closes after its cool-down
        smsA.mode = { status: 429, retryAfter: 1 };
        smsB.mode = { status: 429, retryAfter: 1 };
        const before = smsA.requests.length;
        const id = await publish(['--phone', '+34600111333']);
        await smsA.waitFor((reqs) => reqs.length > before);
        smsA.mode = 'ok'; // the secondary keeps answering 429
        const d = await settled(id, 'sms');
        const attempts = d.attempts.filter((a) => a.channel === 'sms');
        assert.equal(d.channels.find((c) => c.channel === 'sms').status, 'delivered');
        assert.equal(d.channels.find((c) => c.channel === 'sms').provider, 'sms-primary');
        assert.deepEqual(attempts.map((a) => [a.provider, a.status]).slice(0, 2), [['sms-primary', 'rate_limited'], ['sms-secondary', 'rate_limited']]);
        assert.equal(attempts.at(-1).status, 'sent');
        // neither provider was called again before its Retry-After (1 s) passed
        for (const fake of [smsA, smsB]) {
            const mine = fake.requests.filter((r) => r.to === '+34600111333');
            assert.ok(mine.length >= 1);
            for (const r of mine.slice(1)) assert.ok(r.at - mine[0].at >= 900, `called again after ${r.at - mine[0].at} ms`);
        }
        smsB.mode = 'ok';
    });

    it('moves a permanently refused message to the analysis queue with the reason', { timeout: 60000 }, async () => {
        smsA.mode = { status: 400 };
        const id = await publish(['--phone', '+34600111444']);
        const d = await settled(id, 'sms');
        const sms = d.channels.find((c) => c.channel === 'sms');
        assert.equal(sms.status, 'failed');
        assert.match(sms.last_error, /http 400/);
        const peek = await runAsync(srv.env, ['admin', 'queues', 'peek', 'analysis', '--json']);
        assert.equal(peek.code, 0, peek.stderr);
        const msg = peek.json.messages.map((m) => JSON.parse(m.body)).find((b) => b.notification_id === id);
        assert.ok(msg, 'the failure is in the analysis queue');
        assert.equal(msg.channel, 'sms');
        assert.match(msg.reason, /http 400/);
        assert.ok(!peek.stdout.includes('test message'), 'the analysis queue holds the reason, not the content');
        smsA.mode = 'ok';
    });

    it('delivers at most once per channel, unless an admin replays it', { timeout: 60000 }, async () => {
        const id = await publish(['--phone', '+34600111555']);
        await settled(id, 'sms');
        const count = () => [...smsA.requests, ...smsB.requests].filter((r) => r.to === '+34600111555' && r.answered < 300).length;
        assert.equal(count(), 1);
        const replay = await runAsync(srv.env, ['admin', 'notify', 'replay', id, '--json']);
        assert.equal(replay.code, 0, replay.stderr);
        assert.equal(replay.json.channels, 1);
        await eventually(() => count() === 2, 20000, 'replayed SMS');
        const d = await eventually(async () => {
            const x = await deliveries(id);
            return x.channels[0].generation === 2 && x.channels[0].status === 'delivered' ? x : null;
        });
        assert.equal(d.attempts.filter((a) => a.status === 'sent').length, 2);
        assert.deepEqual(d.attempts.map((a) => a.generation), [1, 2]);
        const missing = await runAsync(srv.env, ['admin', 'notify', 'replay', '0190f0a0-0000-7000-8000-00000000dead']);
        assert.equal(missing.code, 1);
    });

    it('serves the delivery log to admins only, with filters and problem+json errors', async () => {
        const noAuth = await srv.request('GET', '/v1/notifications');
        assert.equal(noAuth.status, 401);
        const list = await srv.request('GET', '/v1/notifications?kind=test&limit=2', { token: srv.adminToken });
        assert.equal(list.status, 200);
        assert.equal(list.headers.get('cache-control'), 'no-store');
        assert.equal(list.json.items.length, 2);
        assert.ok(list.json.next_cursor);
        const page2 = await srv.request('GET', `/v1/notifications?kind=test&limit=2&cursor=${list.json.next_cursor}`, { token: srv.adminToken });
        assert.equal(page2.status, 200);
        assert.ok(page2.json.items.every((n) => n.id < list.json.items[1].id));
        const failed = await srv.request('GET', '/v1/notifications?status=failed', { token: srv.adminToken });
        assert.ok(failed.json.items.length >= 1);
        assert.ok(failed.json.items.every((n) => n.channels.some((c) => c.status === 'failed')));
        const byCustomer = await srv.request('GET', '/v1/notifications?customer_id=nobody', { token: srv.adminToken });
        assert.deepEqual(byCustomer.json.items, []);
        const badKind = await srv.request('GET', '/v1/notifications?kind=fax', { token: srv.adminToken });
        assert.equal(badKind.status, 400);
        assert.equal(badKind.json.type, `${PROBLEM_BASE}invalid-request`);
        assert.equal(badKind.json.field, 'kind');
        const badLimit = await srv.request('GET', '/v1/notifications?limit=1000', { token: srv.adminToken });
        assert.equal(badLimit.status, 400);
        const unknown = await srv.request('GET', '/v1/notifications/0190f0a0-0000-7000-8000-00000000beef/deliveries', { token: srv.adminToken });
        assert.equal(unknown.status, 404);
        assert.equal(unknown.json.type, `${PROBLEM_BASE}not-found`);
    });

    it('exports per-queue metrics', async () => {
        const r = await srv.request('GET', '/metrics', { token: srv.adminToken });
        assert.equal(r.status, 200);
        assert.match(r.text, /boveda_queue_depth\{queue="sms"\} \d+/);
        assert.match(r.text, /boveda_queue_in_flight\{queue="email"\} \d+/);
        assert.match(r.text, /boveda_queue_oldest_age_seconds\{queue="analysis"\} [0-9.]+/);
        assert.match(r.text, /boveda_queue_dlq_depth\{queue="sms",dlq="sms-dlq"\} \d+/);
        assert.match(r.text, /boveda_queue_consumer_messages_total\{consumer="notify-sms",result="ack"\} [1-9]/);
    });
});

describe('crash: kill -9 the consumer mid-message', () => {
    it('redelivers after the visibility timeout and completes; nothing lost', { timeout: 90000 }, async () => {
        const sms = await startSmsFake();
        sms.mode = 'hang';
        // `boveda worker` is not wired into main.c yet: the consumer runs inside `boveda serve`
        const srv = await startServer({ env: notifyEnv({ sms: { provider: 'webhook', url: sms.url }, extra: { BOVEDA_NOTIFY_TIMEOUT_MS: '3000', BOVEDA_NOTIFY_VISIBILITY_S: '7' } }) });
        try {
            const pub = await runAsync(srv.env, ['admin', 'notify', 'test', '--no-wait', '--json', '--phone', '+34600999000']);
            assert.equal(pub.code, 0, pub.stderr);
            const id = pub.json.id;
            await sms.waitFor((r) => r.length === 1); // the consumer is inside the provider call
            await srv.kill();
            sms.mode = 'ok';
            await srv.restart();
            await sms.waitFor((r) => r.some((x) => x.answered === 200), 30000);
            const d = await eventually(async () => {
                const r = await srv.request('GET', `/v1/notifications/${id}/deliveries`, { token: srv.adminToken });
                return r.json?.channels?.[0]?.status === 'delivered' ? r.json : null;
            });
            assert.equal(d.channels[0].provider, 'sms-primary');
            assert.ok(sms.requests.every((r) => r.id.startsWith(id)));
            const q = await runAsync(srv.env, ['admin', 'queues', 'list', '--json']);
            const smsQ = q.json.queues.find((x) => x.name === 'sms');
            assert.equal(smsQ.depth + smsQ.in_flight + smsQ.delayed, 0, 'nothing left behind');
            assert.equal(q.json.queues.find((x) => x.name === 'sms-dlq').depth, 0);
        } finally {
            if (srv.running) await srv.stop();
            await sms.close();
        }
    });
});
