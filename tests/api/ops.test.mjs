// Black-box tests of the operational side (issue 2): /healthz, /readyz, /metrics, JSON
// logs, graceful shutdown and restart, and the command line (version, help, config,
// migrate, invalid settings, --config files).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { find, parseMetrics, value } from './lib/prom.mjs';
import { makeTempDir, PROBLEM_BASE, randomToken, REPO, runBoveda, startServer } from './lib/server.mjs';

// What the source tree says the binary must report.
const VERSION = /project\(boveda VERSION (\d+\.\d+\.\d+)/.exec(fs.readFileSync(path.join(REPO, 'CMakeLists.txt'), 'utf8'))[1];
const MIGRATIONS = fs
    .readdirSync(path.join(REPO, 'src'), { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) => {
        const dir = path.join(REPO, 'src', d.name, 'migrations');
        return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^\d+_.*\.sql$/.test(f)) : [];
    })
    .map((f) => Number(f.split('_')[0]));
const SCHEMA_VERSION = Math.max(...MIGRATIONS);
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function sqlite(db, sql) {
    const r = spawnSync('sqlite3', ['-batch', db, sql], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`sqlite3 ${sql}: ${r.stderr}`);
    return r.stdout.trim();
}

// The SQLite database file in a data directory (found, not assumed by name).
function databaseIn(dir) {
    const dbs = fs
        .readdirSync(dir)
        .filter((f) => /\.(db|sqlite3?)$/.test(f))
        .map((f) => path.join(dir, f));
    assert.equal(dbs.length, 1, `expected one database file in ${dir}: ${fs.readdirSync(dir)}`);
    return dbs[0];
}

async function metrics(srv) {
    const r = await srv.request('GET', '/metrics', { token: srv.adminToken });
    assert.equal(r.status, 200, r.text);
    return { r, m: parseMetrics(r.text) };
}

describe('operational endpoints', () => {
    let srv;
    before(async () => {
        srv = await startServer();
    });
    after(async () => {
        await srv?.stop();
    });

    it('GET /healthz -> 200 {"status":"ok"} without credentials', async () => {
        const r = await srv.request('GET', '/healthz');
        assert.equal(r.status, 200);
        assert.deepEqual(r.json, { status: 'ok' });
    });

    it('GET /readyz -> 200 ready with the schema version of the newest migration', async () => {
        const r = await srv.request('GET', '/readyz');
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.json, { status: 'ready', schema_version: SCHEMA_VERSION });
    });

    it('query strings and trailing slashes do not confuse the router', async () => {
        const r = await srv.request('GET', '/healthz?verbose=1');
        assert.equal(r.status, 200);
        assert.deepEqual(r.json, { status: 'ok' });
        const r2 = await srv.request('GET', '/healthz/');
        assert.ok([200, 404].includes(r2.status), `GET /healthz/ -> ${r2.status}`);
        const r3 = await srv.request('GET', '/healthz/extra');
        assert.equal(r3.status, 404);
    });

    it('GET /metrics requires the admin token', async () => {
        const r = await srv.request('GET', '/metrics');
        assert.equal(r.status, 401);
        assert.equal(r.json.type, PROBLEM_BASE + 'unauthenticated');
        assert.ok(!r.text.includes('boveda_http_requests_total'));
    });

    it('GET /metrics is Prometheus text 0.0.4 with every family typed', async () => {
        const { r, m } = await metrics(srv);
        assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
        assert.equal(m.types.boveda_http_requests_total, 'counter');
        assert.equal(m.types.boveda_http_request_duration_seconds, 'histogram');
        assert.equal(m.types.boveda_http_in_flight_requests, 'gauge');
        assert.equal(m.types.boveda_worker_queue_depth, 'gauge');
        assert.equal(m.types.boveda_store_commit_batch_size, 'histogram');
        assert.equal(m.types.boveda_build_info, 'gauge');
        // every sample belongs to a declared family
        for (const s of m.samples) {
            const family = s.name.replace(/_(bucket|sum|count)$/, '');
            assert.ok(m.types[s.name] || m.types[family], `sample ${s.name} has no # TYPE`);
        }
    });

    it('requests are counted by route template, method and status', async () => {
        const labels = { route: '/healthz', method: 'GET', status: '200' };
        const before = value((await metrics(srv)).m, 'boveda_http_requests_total', labels) ?? 0;
        for (let i = 0; i < 3; i++) assert.equal((await srv.request('GET', '/healthz')).status, 200);
        const afterValue = value((await metrics(srv)).m, 'boveda_http_requests_total', labels);
        assert.equal(afterValue - before, 3);
        const unauth = value((await metrics(srv)).m, 'boveda_http_requests_total', { route: '/metrics', method: 'GET', status: '401' });
        assert.ok(unauth >= 1, 'the 401 on /metrics was counted');
    });

    it('unknown paths do not create a label per path', async () => {
        const marker = `nope-${randomToken(12)}`;
        assert.equal((await srv.request('GET', `/${marker}`)).status, 404);
        const { r } = await metrics(srv);
        assert.ok(!r.text.includes(marker), 'a raw request path leaked into metric labels');
    });

    it('the latency histogram has cumulative buckets ending in +Inf = _count', async () => {
        await srv.request('GET', '/healthz');
        const { m } = await metrics(srv);
        const labels = { route: '/healthz', method: 'GET' };
        const buckets = find(m, 'boveda_http_request_duration_seconds_bucket', labels);
        assert.ok(buckets.length >= 5, 'at least a few buckets');
        const les = buckets.map((b) => (b.labels.le === '+Inf' ? Infinity : Number(b.labels.le)));
        assert.ok(les.every((x) => !Number.isNaN(x)));
        for (let i = 1; i < buckets.length; i++) {
            assert.ok(les[i] > les[i - 1], 'le increasing');
            assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative counts');
        }
        assert.equal(les.at(-1), Infinity);
        const count = value(m, 'boveda_http_request_duration_seconds_count', labels);
        const sum = value(m, 'boveda_http_request_duration_seconds_sum', labels);
        assert.equal(buckets.at(-1).value, count);
        assert.ok(count >= 1);
        assert.ok(sum >= 0);
    });

    it('in-flight, worker queue depth, commit batch sizes and build info', async () => {
        const { m } = await metrics(srv);
        const inflight = value(m, 'boveda_http_in_flight_requests');
        assert.ok(Number.isInteger(inflight) && inflight >= 0);
        for (const pool of ['read', 'write']) {
            const depth = value(m, 'boveda_worker_queue_depth', { pool });
            assert.ok(Number.isInteger(depth) && depth >= 0, pool);
            const busy = value(m, 'boveda_worker_busy', { pool });
            assert.ok(Number.isInteger(busy) && busy >= 0, pool);
        }
        const batches = find(m, 'boveda_store_commit_batch_size_bucket');
        assert.ok(batches.length >= 2);
        assert.equal(batches.at(-1).labels.le, '+Inf');
        assert.equal(batches.at(-1).value, value(m, 'boveda_store_commit_batch_size_count'));
        /* every commit made durable by some fsync, one fsync covering one commit or more */
        const syncs = value(m, 'boveda_store_syncs_total');
        assert.ok(syncs >= 1 && syncs <= value(m, 'boveda_store_commit_batch_size_count') + 1, String(syncs));
        const info = find(m, 'boveda_build_info');
        assert.equal(info.length, 1);
        assert.equal(info[0].value, 1);
        assert.equal(info[0].labels.version, VERSION);
        assert.match(info[0].labels.commit, /^([0-9a-f]{7,40}|unknown)$/);
    });

    it('GET /readyz -> 503 problem when the schema is not what the binary expects', async (t) => {
        const db = databaseIn(srv.dataDir);
        const tables = sqlite(db, "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%migration%'");
        assert.ok(tables.length > 0, 'a schema migrations table exists');
        const table = tables.split('\n')[0];
        const saved = sqlite(db, `SELECT count(*) FROM ${table}`);
        assert.equal(Number(saved), MIGRATIONS.length);
        sqlite(db, `CREATE TABLE saved_migrations AS SELECT * FROM ${table}; DELETE FROM ${table};`);
        t.after(() => sqlite(db, `INSERT INTO ${table} SELECT * FROM saved_migrations; DROP TABLE saved_migrations;`));
        const r = await srv.request('GET', '/readyz');
        assert.equal(r.status, 503, r.text);
        assert.match(r.headers.get('content-type'), /^application\/problem\+json/);
        assert.equal(r.json.status, 503);
        assert.equal((await srv.request('GET', '/healthz')).status, 200, 'liveness is not readiness');
    });
});

describe('logs and shutdown', () => {
    it('JSON log lines, request fields, no secrets; SIGTERM -> exit 0 and "stopped"', async () => {
        const srv = await startServer();
        const secretBody = `SECRET-BODY-${randomToken(16)}`;
        const cookie = `session=${randomToken(24)}`;
        const wrongToken = randomToken(40);
        const id = `log-test-${randomToken(8)}`;
        await srv.request('GET', '/healthz', { headers: { 'x-request-id': id, cookie } });
        await srv.request('GET', '/metrics', { token: srv.adminToken, headers: { 'x-request-id': `${id}-m` } });
        await srv.request('GET', '/metrics', { token: wrongToken });
        await srv.request('POST', '/v1/accounts', {
            token: srv.adminToken,
            body: { bogus: secretBody },
            headers: { 'x-request-id': `${id}-p`, 'idempotency-key': randomToken(20) },
        });
        const acctId = '01890a5d-ac96-774b-bcce-b302099a8057';
        await srv.request('GET', `/v1/accounts/${acctId}`, { token: srv.adminToken, headers: { 'x-request-id': `${id}-t` } });

        const line = await srv.waitForLog((l) => l.msg === 'request' && l.request_id === id);
        assert.match(line.ts, RFC3339);
        assert.equal(line.level, 'info');
        assert.equal(line.method, 'GET');
        assert.equal(line.route, '/healthz');
        assert.equal(line.status, 200);
        assert.ok(Number.isInteger(line.duration_us) && line.duration_us >= 0);
        assert.equal(line.bytes, '{"status":"ok"}'.length);

        const tmpl = await srv.waitForLog((l) => l.msg === 'request' && l.request_id === `${id}-t`);
        assert.equal(tmpl.route, '/v1/accounts/{id}', 'routes are logged as templates');
        assert.ok(!JSON.stringify(tmpl).includes(acctId) || tmpl.path === undefined, 'no raw ids as route');

        await srv.waitForLog((l) => l.msg === 'request' && l.request_id === `${id}-p`);
        const e = await srv.stop();
        assert.deepEqual(e, { code: 0, signal: null });
        assert.ok(srv.logs.some((l) => l.msg === 'stopped'), 'a "stopped" line');

        for (const raw of srv.stderrLines) {
            if (raw === '') continue;
            const l = JSON.parse(raw); // every line is JSON
            assert.match(l.ts, RFC3339, raw);
            assert.ok(['debug', 'info', 'warn', 'error'].includes(l.level), raw);
            assert.equal(typeof l.msg, 'string');
        }
        const all = srv.stderr + srv.stdout;
        assert.ok(!all.includes(srv.adminToken), 'the admin token appears in the logs');
        assert.ok(!all.includes(wrongToken), 'a presented bearer token appears in the logs');
        assert.ok(!all.includes(secretBody), 'a request body appears in the logs');
        assert.ok(!all.includes(cookie.split('=')[1]), 'a cookie appears in the logs');
    });

    it('SIGINT also stops gracefully with exit 0', async () => {
        const srv = await startServer();
        assert.equal((await srv.request('GET', '/healthz')).status, 200);
        const e = await srv.signal('SIGINT');
        assert.deepEqual(e, { code: 0, signal: null }, srv.stderr);
        assert.equal(srv.sanitizerReport(), null);
        assert.ok(srv.logs.some((l) => l.msg === 'stopped'));
    });

    it('restart on the same data directory and port keeps serving (no migration re-applied)', async () => {
        const srv = await startServer();
        const url = srv.url;
        await srv.stop();
        const applied = srv.logs.filter((l) => l.msg === 'migration applied').length;
        assert.ok(applied >= 1, 'the first start applied the migrations');
        await srv.restart();
        assert.equal(srv.url, url);
        assert.equal((await srv.request('GET', '/readyz')).status, 200);
        assert.equal(srv.logs.filter((l) => l.msg === 'migration applied').length, applied);
        await srv.stop();
    });

    it('after kill -9 the server restarts on the same data directory', async () => {
        const srv = await startServer();
        assert.equal((await srv.request('GET', '/readyz')).status, 200);
        const e = await srv.kill();
        assert.equal(e.signal, 'SIGKILL');
        await srv.restart();
        const r = await srv.request('GET', '/readyz');
        assert.equal(r.status, 200);
        assert.equal(r.json.schema_version, SCHEMA_VERSION);
        await srv.stop();
    });

    it('a port already in use stops start-up with a non-zero exit', async () => {
        const blocker = net.createServer();
        await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
        try {
            const r = runBoveda(['serve'], {
                env: { BOVEDA_DATA_DIR: makeTempDir(), BOVEDA_HTTP_LISTEN: `127.0.0.1:${blocker.address().port}` },
                timeout: 15000,
            });
            assert.notEqual(r.code, 0, `serve started on a busy port: ${r.stderr}`);
            assert.notEqual(r.code, null, 'serve did not exit on a busy port');
        } finally {
            blocker.close();
        }
    });
});

describe('command line', () => {
    const dataEnv = () => ({ BOVEDA_DATA_DIR: makeTempDir() });

    it('boveda version prints the version', () => {
        const r = runBoveda(['version']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`\\b${VERSION.replace(/\./g, '\\.')}\\b`));
    });

    it('boveda --help lists the commands', () => {
        const r = runBoveda(['--help']);
        assert.equal(r.code, 0, r.stderr);
        for (const cmd of ['serve', 'migrate', 'version', 'config']) assert.match(r.stdout, new RegExp(`\\b${cmd}\\b`));
    });

    it('boveda help serve / serve --help describe serve', () => {
        const r = runBoveda(['help', 'serve']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /serve/);
        assert.ok(r.stdout.length > 40);
        const r2 = runBoveda(['serve', '--help'], { timeout: 5000 });
        assert.equal(r2.code, 0, r2.stderr);
        assert.equal(r2.stdout, r.stdout);
        for (const cmd of ['migrate', 'config', 'version']) {
            const h = runBoveda(['help', cmd]);
            assert.equal(h.code, 0, `help ${cmd}: ${h.stderr}`);
            assert.match(h.stdout, new RegExp(cmd));
        }
    });

    it('an unknown command fails with a message', () => {
        const r = runBoveda(['frobnicate']);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /frobnicate/);
        const h = runBoveda(['help', 'frobnicate']);
        assert.notEqual(h.code, 0);
    });

    it('boveda config prints every setting with secrets masked', () => {
        const token = randomToken(48);
        const pin = randomToken(12);
        const r = runBoveda(['config'], { env: { BOVEDA_ADMIN_TOKEN: token, BOVEDA_PKCS11_PIN: pin, BOVEDA_THREADS: '3' } });
        assert.equal(r.code, 0, r.stderr);
        const lines = r.stdout.trim().split('\n');
        const cfg = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
        assert.equal(cfg.BOVEDA_ADMIN_TOKEN, '********');
        assert.equal(cfg.BOVEDA_PKCS11_PIN, '********');
        assert.ok(!r.stdout.includes(token) && !r.stdout.includes(pin), 'a secret was printed');
        assert.equal(cfg.BOVEDA_THREADS, '3');
        assert.equal(cfg.BOVEDA_HTTP_LISTEN, '127.0.0.1:8080', 'default listen address');
        for (const k of ['BOVEDA_DATA_DIR', 'BOVEDA_HTTPS_LISTEN', 'BOVEDA_TLS_CERT', 'BOVEDA_TLS_KEY', 'BOVEDA_LOG_LEVEL', 'BOVEDA_CORS_ORIGINS']) {
            assert.ok(k in cfg, `${k} is printed`);
        }
        const unset = runBoveda(['config']);
        assert.equal(unset.code, 0);
        assert.match(unset.stdout, /^BOVEDA_ADMIN_TOKEN=$/m, 'an unset secret prints empty, not masked');
    });

    it('boveda migrate applies every migration and is idempotent', () => {
        const env = dataEnv();
        const r = runBoveda(['migrate'], { env });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout + r.stderr, new RegExp(`\\b${SCHEMA_VERSION}\\b`));
        const db = databaseIn(env.BOVEDA_DATA_DIR);
        const table = sqlite(db, "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '%migration%'").split('\n')[0];
        assert.equal(Number(sqlite(db, `SELECT count(*) FROM ${table}`)), MIGRATIONS.length);
        const schema = sqlite(db, '.schema');
        const r2 = runBoveda(['migrate'], { env });
        assert.equal(r2.code, 0, r2.stderr);
        assert.equal(Number(sqlite(db, `SELECT count(*) FROM ${table}`)), MIGRATIONS.length);
        assert.equal(sqlite(db, '.schema'), schema);
        assert.ok(!/migration applied/.test(r2.stderr), 'second run applied something');
        assert.equal(sqlite(db, 'PRAGMA journal_mode'), 'wal');
        assert.equal(sqlite(db, 'PRAGMA integrity_check'), 'ok');
    });

    it('boveda serve on a migrated directory starts without applying anything', async () => {
        const env = dataEnv();
        assert.equal(runBoveda(['migrate'], { env }).code, 0);
        const srv = await startServer({ env });
        assert.equal((await srv.request('GET', '/readyz')).status, 200);
        assert.ok(!srv.logs.some((l) => l.msg === 'migration applied'));
        await srv.stop();
    });

    const invalid = [
        ['BOVEDA_THREADS', 'abc'],
        ['BOVEDA_THREADS', '-1'],
        ['BOVEDA_HTTP_LISTEN', 'nonsense'],
        ['BOVEDA_HTTP_LISTEN', '127.0.0.1:99999'],
        ['BOVEDA_LOG_LEVEL', 'loud'],
        ['BOVEDA_MAX_BODY', '1'],
        ['BOVEDA_ADMIN_TOKEN', 'too-short'],
        ['BOVEDA_REQUEST_TIMEOUT_MS', '12x'],
    ];
    for (const [name, bad] of invalid) {
        it(`invalid ${name}=${bad} stops serve with one line naming it`, () => {
            const r = runBoveda(['serve'], { env: { ...dataEnv(), BOVEDA_HTTP_LISTEN: '127.0.0.1:0', [name]: bad }, timeout: 10000 });
            assert.notEqual(r.code, null, 'serve started (killed by the test timeout)');
            assert.notEqual(r.code, 0);
            const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
            assert.equal(lines.length, 1, `exactly one stderr line, got:\n${r.stderr}`);
            assert.match(lines[0], new RegExp(name));
            if (name === 'BOVEDA_ADMIN_TOKEN') assert.ok(!lines[0].includes(bad), 'the bad secret is echoed');
        });
    }

    it('HTTPS without a readable certificate stops start-up naming BOVEDA_TLS_CERT', () => {
        const r = runBoveda(['serve'], {
            env: { ...dataEnv(), BOVEDA_HTTP_LISTEN: '127.0.0.1:0', BOVEDA_HTTPS_LISTEN: '127.0.0.1:0', BOVEDA_TLS_CERT: '/nonexistent.pem' },
            timeout: 10000,
        });
        assert.notEqual(r.code, 0);
        assert.notEqual(r.code, null);
        assert.match(r.stderr, /BOVEDA_TLS_CERT/);
    });

    it('--config FILE (INI) is read; the environment wins', () => {
        const dir = makeTempDir();
        const file = path.join(dir, 'boveda.ini');
        fs.writeFileSync(
            file,
            '# comment\n; comment\nthreads = 5\n[http]\nlisten = 127.0.0.1:18080\n\n[log]\nlevel = "warn"\n',
        );
        const r = runBoveda(['--config', file, 'config']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^BOVEDA_HTTP_LISTEN=127\.0\.0\.1:18080$/m);
        assert.match(r.stdout, /^BOVEDA_LOG_LEVEL=warn$/m);
        assert.match(r.stdout, /^BOVEDA_THREADS=5$/m);
        const r2 = runBoveda(['config', '--config', file], { env: { BOVEDA_HTTP_LISTEN: '127.0.0.1:19090' } });
        assert.equal(r2.code, 0, r2.stderr);
        assert.match(r2.stdout, /^BOVEDA_HTTP_LISTEN=127\.0\.0\.1:19090$/m, 'environment wins over the file');
        assert.match(r2.stdout, /^BOVEDA_LOG_LEVEL=warn$/m);
    });

    it('--config with an unknown key or a bad value names the file and line', () => {
        const dir = makeTempDir();
        const file = path.join(dir, 'bad.ini');
        fs.writeFileSync(file, '[http]\nlisten = 127.0.0.1:0\nfrobnicate = 1\n');
        const r = runBoveda(['--config', file, 'serve'], { env: dataEnv(), timeout: 10000 });
        assert.notEqual(r.code, 0);
        assert.notEqual(r.code, null);
        assert.match(r.stderr, /bad\.ini:3/);
        fs.writeFileSync(file, '[http]\nlisten = nonsense\n');
        const r2 = runBoveda(['--config', file, 'config']);
        assert.notEqual(r2.code, 0);
        assert.match(r2.stderr, /BOVEDA_HTTP_LISTEN/);
        const r3 = runBoveda(['--config', path.join(dir, 'missing.ini'), 'config']);
        assert.notEqual(r3.code, 0);
        assert.match(r3.stderr, /missing\.ini/);
    });

    it('boveda serve --config FILE serves on the address from the file', async () => {
        const dir = makeTempDir();
        const file = path.join(dir, 'serve.ini');
        // port 0 in the file; without the file the default 127.0.0.1:8080 would be used
        fs.writeFileSync(file, '[http]\nlisten = 127.0.0.1:0\n');
        const srv = await startServer({ env: { BOVEDA_HTTP_LISTEN: undefined }, args: ['serve', '--config', file] });
        assert.notEqual(new URL(srv.url).port, '8080');
        assert.equal((await srv.request('GET', '/healthz')).status, 200);
        await srv.stop();
    });
});
