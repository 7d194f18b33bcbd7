// Black-box tests of the audit log (issue 3): GET /v1/audit/events (auth, filters,
// pagination, bad parameters audited and rejected naming the parameter) and
// `boveda admin audit verify|checkpoint` against a data directory tampered with the sqlite3 CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { makeTempDir, PROBLEM_BASE, startServer } from './lib/server.mjs';

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ITEM_KEYS = ['action', 'actor', 'details', 'id', 'outcome', 'request_id', 'resource', 'seq', 'source_ip', 'time'];

function assertProblem(r, status, slug, field) {
    assert.equal(r.status, status, `status (body: ${r.text})`);
    assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(r.json.type, PROBLEM_BASE + slug);
    if (field !== undefined) assert.equal(r.json.field, field);
}

function sqlite(db, sql) {
    const r = spawnSync('sqlite3', [db, sql], { encoding: 'utf8' });
    assert.equal(r.status, 0, `sqlite3 failed: ${r.stderr}`);
    return r.stdout.trim();
}

describe('audit log', () => {
    let srv;
    const badRequests = []; // {param, requestId} of the rejected requests, oldest first
    const list = (query, token = srv.adminToken) => srv.request('GET', `/v1/audit/events${query}`, { token });

    before(async () => {
        srv = await startServer();
    });
    after(async () => {
        if (srv?.running) await srv.stop();
    });

    it('requires a credential', async () => {
        const r = await srv.request('GET', '/v1/audit/events');
        assertProblem(r, 401, 'unauthenticated');
        const r2 = await list('', 'not-a-valid-token');
        assertProblem(r2, 401, 'unauthenticated');
    });

    it('rejects bad parameters with 400 naming the parameter, and audits the attempt', async () => {
        const cases = [
            ['from', '?from=yesterday'],
            ['to', '?to=2024-13-45T00:00:00Z'],
            ['cursor', '?cursor=not-a-cursor'],
            ['limit', '?limit=0'],
            ['limit', '?limit=501'],
            ['limit', '?limit=ten'],
            ['actor', '?actor='],
        ];
        for (const [param, q] of cases) {
            const r = await list(q);
            assertProblem(r, 400, 'invalid-request', param);
            badRequests.push({ param, requestId: r.headers.get('x-request-id') });
        }
    });

    it('lists events newest first with every field', async () => {
        const r = await list('?action=audit.events.list');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.headers.get('cache-control'), 'no-store');
        const { items, next_cursor: next } = r.json;
        assert.equal(next, null);
        assert.equal(items.length, badRequests.length);
        for (let i = 0; i < items.length; i++) {
            const it = items[i];
            const want = badRequests[badRequests.length - 1 - i];
            assert.deepEqual(Object.keys(it).sort(), ITEM_KEYS);
            assert.match(it.id, UUID7);
            assert.ok(Number.isInteger(it.seq));
            if (i > 0) assert.ok(it.seq < items[i - 1].seq, 'newest first');
            assert.match(it.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
            assert.equal(it.actor, 'admin:admin');
            assert.equal(it.action, 'audit.events.list');
            assert.equal(it.outcome, 'invalid');
            assert.equal(it.source_ip, '127.0.0.1');
            assert.equal(it.request_id, want.requestId);
            assert.deepEqual(it.details, { parameter: want.param });
        }
    });

    it('paginates with an opaque cursor', async () => {
        const seen = [];
        let cursor = null;
        let pages = 0;
        do {
            const r = await list(`?action=audit.events.list&limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
            assert.equal(r.status, 200, r.text);
            assert.ok(r.json.items.length <= 3);
            seen.push(...r.json.items.map((x) => x.seq));
            cursor = r.json.next_cursor;
            if (cursor !== null) {
                assert.equal(typeof cursor, 'string');
                assert.ok(!/^\d+$/.test(cursor), 'cursor is opaque, not a bare seq');
            }
            pages++;
        } while (cursor !== null && pages < 10);
        assert.equal(pages, Math.ceil(badRequests.length / 3));
        assert.equal(seen.length, badRequests.length);
        assert.deepEqual(seen, [...seen].sort((a, b) => b - a));
        assert.equal(new Set(seen).size, seen.length, 'no item twice');
    });

    it('filters by actor, action and time', async () => {
        let r = await list('?actor=admin:admin');
        assert.equal(r.status, 200);
        assert.ok(r.json.items.length >= badRequests.length);
        assert.ok(r.json.items.every((x) => x.actor === 'admin:admin'));
        r = await list('?actor=user:nobody');
        assert.deepEqual(r.json, { items: [], next_cursor: null });
        r = await list('?action=no.such.action');
        assert.deepEqual(r.json.items, []);
        r = await list(`?action=audit.events.list&from=${encodeURIComponent(new Date(Date.now() + 86400e3).toISOString())}`);
        assert.deepEqual(r.json.items, []);
        r = await list('?action=audit.events.list&to=2000-01-01T00:00:00Z');
        assert.deepEqual(r.json.items, []);
        r = await list('?action=audit.events.list&from=2000-01-01T00:00:00Z&to=2999-01-01T00:00:00%2B02:00');
        assert.equal(r.json.items.length, badRequests.length);
        // the window between the 2nd and the 4th rejected request: exactly records 2 and 3
        const all = (await list('?action=audit.events.list')).json.items.reverse();
        r = await list(`?action=audit.events.list&from=${encodeURIComponent(all[1].time)}&to=${encodeURIComponent(all[3].time)}`);
        const seqs = r.json.items.map((x) => x.seq);
        assert.ok(seqs.includes(all[1].seq) && !seqs.includes(all[3].seq) && !seqs.includes(all[0].seq), JSON.stringify(seqs));
    });

    describe('admin audit verify', () => {
        let ids; // id by seq, from the API
        const copies = [];

        // A copy of the stopped server's data directory, to tamper with.
        function copyDataDir() {
            const d = makeTempDir('boveda-audit-copy-');
            fs.cpSync(srv.dataDir, d, { recursive: true });
            for (const f of fs.readdirSync(d)) if (/-(wal|shm)$/.test(f)) fs.rmSync(path.join(d, f));
            copies.push(d);
            return d;
        }
        const verify = (dir) => srv.run(['admin', 'audit', 'verify', '--json'], { env: { BOVEDA_DATA_DIR: dir } });
        const parse = (r) => {
            try {
                return JSON.parse(r.stdout);
            } catch {
                assert.fail(`verify printed no JSON: ${r.stdout} ${r.stderr}`);
            }
        };

        before(async () => {
            const r = await list('?limit=500');
            ids = new Map(r.json.items.map((x) => [x.seq, x.id]));
            assert.ok(ids.size >= 5);
            await srv.stop(); // a graceful stop signs the final head
        });

        it('passes on an untouched log, with the shutdown checkpoint verified', () => {
            const r = verify(srv.dataDir);
            assert.equal(r.code, 0, r.stdout + r.stderr);
            const v = parse(r);
            assert.equal(v.ok, true);
            assert.equal(v.records, ids.size);
            assert.equal(v.head_seq, Math.max(...ids.keys()));
            assert.ok(v.checkpoints >= 1, 'the head was checkpointed at shutdown');
            const text = srv.run(['admin', 'audit', 'verify']);
            assert.equal(text.code, 0);
            assert.match(text.stdout, /OK/);
        });

        it('names an edited record', () => {
            const d = copyDataDir();
            sqlite(path.join(d, 'boveda.db'), "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 2");
            const r = verify(d);
            assert.equal(r.code, 1, r.stdout + r.stderr);
            const v = parse(r);
            assert.equal(v.ok, false);
            assert.equal(v.failure.reason, 'altered');
            assert.equal(v.failure.seq, 2);
            assert.equal(v.failure.id, ids.get(2));
            const text = srv.run(['admin', 'audit', 'verify'], { env: { BOVEDA_DATA_DIR: d } });
            assert.equal(text.code, 1);
            assert.ok(text.stdout.includes(ids.get(2)), text.stdout);
        });

        it('names a deleted record', () => {
            const d = copyDataDir();
            sqlite(path.join(d, 'boveda.db'), 'DELETE FROM audit_log WHERE seq = 3');
            const v = parse(verify(d));
            assert.equal(v.failure.reason, 'removed');
            assert.equal(v.failure.seq, 3);
            assert.ok(v.failure.detail.includes(ids.get(4)), v.failure.detail);
        });

        it('names swapped records', () => {
            const d = copyDataDir();
            sqlite(path.join(d, 'boveda.db'),
                'UPDATE audit_log SET seq = -3 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 4; ' +
                'UPDATE audit_log SET seq = 4 WHERE seq = -3;');
            const r = verify(d);
            assert.equal(r.code, 1);
            const v = parse(r);
            assert.equal(v.failure.reason, 'reordered');
            assert.equal(v.failure.seq, 3);
            assert.equal(v.failure.id, ids.get(4));
        });

        it('detects records removed from the end (past the signed checkpoint)', () => {
            const d = copyDataDir();
            const last = Math.max(...ids.keys());
            sqlite(path.join(d, 'boveda.db'), `DELETE FROM audit_log WHERE seq = ${last}`);
            const r = verify(d);
            assert.equal(r.code, 1, r.stdout);
            const v = parse(r);
            assert.equal(v.failure.reason, 'removed');
            assert.equal(v.failure.seq, last);
        });

        it('detects a forged checkpoint signature', () => {
            const d = copyDataDir();
            sqlite(path.join(d, 'boveda.db'), 'UPDATE audit_checkpoints SET signature = randomblob(64)');
            const r = verify(d);
            assert.equal(r.code, 1, r.stdout);
            assert.equal(parse(r).failure.reason, 'bad-checkpoint');
        });

        it('forces a checkpoint from the command line', () => {
            const d = copyDataDir();
            const db = path.join(d, 'boveda.db');
            sqlite(db, 'DELETE FROM audit_checkpoints');
            const env = { BOVEDA_DATA_DIR: d };
            const c = srv.run(['admin', 'audit', 'checkpoint'], { env });
            assert.equal(c.code, 0, c.stdout + c.stderr);
            assert.equal(sqlite(db, 'SELECT seq FROM audit_checkpoints'), String(Math.max(...ids.keys())));
            const v = parse(verify(d));
            assert.equal(v.ok, true);
            assert.equal(v.checkpoints, 1);
        });

        it('rejects unknown subcommands with a usage error', () => {
            const r = srv.run(['admin', 'audit', 'frobnicate']);
            assert.equal(r.code, 2);
        });
    });
});
