// Queues (issue 6), black box: `boveda admin queues list|peek|redrive|purge [--json]`, a
// poison message dead-lettered by a running consumer and redriven, the outbox drained into
// topics while serving, and name validation.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { startServer } from './lib/server.mjs';
import { eventually, notifyEnv, runAsync, startSmsFake } from './lib/smsfake.mjs';

function sqlite(db, sql) {
    const r = spawnSync('sqlite3', ['-cmd', '.timeout 5000', db, sql], { encoding: 'utf8' });
    assert.equal(r.status, 0, `sqlite3 failed: ${r.stderr}`);
    return r.stdout.trim();
}

describe('boveda admin queues', () => {
    let srv;
    let sms;
    let db;
    const admin = async (...args) => runAsync(srv.env, ['admin', 'queues', ...args]);
    const queue = async (name) => (await admin('list', '--json')).json.queues.find((q) => q.name === name);

    before(async () => {
        sms = await startSmsFake();
        srv = await startServer({ env: notifyEnv({ sms: { provider: 'webhook', url: sms.url } }) });
        db = path.join(srv.dataDir, 'boveda.db');
    });
    after(async () => {
        if (srv?.running) await srv.stop();
        await sms?.close();
    });

    it('lists the notification queues with their DLQs', async () => {
        const r = await admin('list', '--json');
        assert.equal(r.code, 0, r.stderr);
        const names = r.json.queues.map((q) => q.name);
        for (const n of ['analysis', 'email', 'email-dlq', 'sms', 'sms-dlq']) assert.ok(names.includes(n), n);
        const q = r.json.queues.find((x) => x.name === 'sms');
        assert.equal(q.type, 'standard');
        assert.equal(q.dlq, 'sms-dlq');
        assert.equal(q.visibility_timeout_ms, 6000); // BOVEDA_NOTIFY_VISIBILITY_S
        for (const k of ['depth', 'in_flight', 'delayed', 'oldest_age_ms', 'dlq_depth']) assert.equal(typeof q[k], 'number');
        const text = await admin('list');
        assert.equal(text.code, 0);
        assert.match(text.stdout, /^QUEUE\s+TYPE\s+DEPTH/m);
        assert.match(text.stdout, /^sms\s+standard/m);
    });

    it('dead-letters a poison message, then peeks, redrives and purges it', { timeout: 60000 }, async () => {
        // a message no consumer can understand, written straight into the queue table
        sqlite(db, `INSERT INTO queue_messages(id, queue, body, attributes, visible_at, created_at)
                    VALUES ('0190f0a0-0000-7000-8000-00000000b0d1', 'sms', CAST('not json' AS BLOB), '{"kind":"x"}', 0, ${Date.now() * 1000})`);
        const dead = await eventually(async () => {
            const q = await queue('sms-dlq');
            return q.depth === 1 ? q : null;
        }, 20000, 'poison message in the DLQ');
        assert.equal(dead.depth, 1);
        assert.equal((await queue('sms')).dlq_depth, 1);
        const peek = await admin('peek', 'sms-dlq', '--json');
        assert.equal(peek.code, 0, peek.stderr);
        assert.equal(peek.json.messages.length, 1);
        assert.equal(peek.json.messages[0].body, 'not json');
        assert.equal(peek.json.messages[0].source_queue, 'sms');
        assert.deepEqual(peek.json.messages[0].attributes, { kind: 'x' });
        const text = await admin('peek', 'sms-dlq');
        assert.match(text.stdout, /0190f0a0-0000-7000-8000-00000000b0d1\s+visible/);

        // stop the consumer so the redriven message stays put, then redrive and purge
        await srv.stop();
        const redrive = await admin('redrive', 'sms-dlq', '--json');
        assert.equal(redrive.code, 0, redrive.stderr);
        assert.deepEqual(redrive.json, { ok: true, queue: 'sms-dlq', action: 'redrive', messages: 1 });
        assert.equal((await queue('sms-dlq')).depth, 0);
        const back = await admin('peek', 'sms', '--json');
        assert.equal(back.json.messages.length, 1);
        assert.equal(back.json.messages[0].receive_count, 0);
        assert.equal(back.json.messages[0].source_queue, null);
        const purge = await admin('purge', 'sms');
        assert.equal(purge.code, 0);
        assert.match(purge.stdout, /purged sms: 1 message/);
        assert.equal((await queue('sms')).depth, 0);
        await srv.restart();
    });

    it('drains the outbox into topics while serving', { timeout: 30000 }, async () => {
        sqlite(db, `INSERT INTO outbox(id, topic, payload, attributes, created_at)
                    VALUES ('0190f0a0-0000-7000-8000-00000000c0de', 'ledger', '{"event":"x"}', '{}', ${Date.now() * 1000})`);
        await eventually(
            () => sqlite(db, "SELECT count(*) FROM outbox WHERE id='0190f0a0-0000-7000-8000-00000000c0de'") === '0',
            20000,
            'outbox row published and deleted',
        );
    });

    it('rejects bad names and unknown queues', async () => {
        const bad = await admin('peek', 'Bad/Name');
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /invalid queue name/);
        const missing = await admin('purge', 'no-such-queue', '--json');
        assert.equal(missing.code, 1);
        assert.deepEqual(missing.json, { ok: false, error: 'not-found' });
        const missingDlq = await admin('redrive', 'no-such-dlq');
        assert.equal(missingDlq.code, 1);
        const usage = await admin('frobnicate', 'x');
        assert.equal(usage.code, 2);
    });
});
