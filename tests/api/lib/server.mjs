// Shared harness for the black-box API tests: starts the real `boveda` binary on a free
// port with a fresh data directory, talks HTTP to it and stops it. Only node: built-ins.
//
//   import { startServer } from './lib/server.mjs';
//   const srv = await startServer({ env: { BOVEDA_CORS_ORIGINS: 'https://app.example' } });
//   const r = await srv.request('GET', '/metrics', { token: srv.adminToken });
//   r.status, r.headers.get('content-type') (or r.headers['content-type']), r.json, r.text
//   await srv.stop();   // SIGTERM; throws if the exit status is not 0 or a sanitizer reported
//
// The binary is $BOVEDA_BIN (default <repo>/build/boveda), so the same tests run against the
// AddressSanitizer build (BOVEDA_BIN=build-asan/boveda).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = process.env.BOVEDA_BIN ? path.resolve(process.env.BOVEDA_BIN) : path.join(REPO, 'build', 'boveda');
export const PROBLEM_BASE = 'https://boveda.dev/problems/';

const START_TIMEOUT_MS = Number(process.env.BOVEDA_TEST_START_TIMEOUT_MS || 10000);
const STOP_TIMEOUT_MS = 20000;
// What AddressSanitizer, LeakSanitizer and UBSan print when they find something.
const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer/;

const live = new Set(); // child processes still running
const tempDirs = new Set();

function cleanupAtExit() {
    for (const child of live) {
        try {
            child.kill('SIGKILL');
        } catch {
            /* already gone */
        }
    }
    live.clear();
    if (!process.env.BOVEDA_TEST_KEEP_DATA) {
        for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
    }
    tempDirs.clear();
}
process.on('exit', cleanupAtExit);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
        cleanupAtExit();
        process.exit(128 + os.constants.signals[sig]);
    });
}

/** A fresh temporary directory, removed when the test process exits. */
export function makeTempDir(prefix = 'boveda-test-') {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    tempDirs.add(d);
    return d;
}

/** A random token of `len` characters from [A-Za-z0-9]. */
export function randomToken(len = 48) {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    let out = '';
    while (out.length < len) {
        for (const b of randomBytes(len)) {
            if (b < 248 && out.length < len) out += alphabet[b % 62]; // 248 = 4 * 62: no modulo bias
        }
    }
    return out;
}

/** The environment of a child: ours without any BOVEDA_* setting, then `env` on top.
 * A value of undefined or null in `env` removes the variable. */
function childEnv(env) {
    const out = {};
    for (const [k, v] of Object.entries(process.env)) {
        if (!k.startsWith('BOVEDA_')) out[k] = v;
    }
    for (const [k, v] of Object.entries(env)) {
        if (v === undefined || v === null) delete out[k];
        else out[k] = String(v);
    }
    return out;
}

/** Runs `boveda <args>` to completion (synchronously) with exactly the BOVEDA_* settings in
 * `env` (plus the rest of the test process's environment). Returns {code, signal, stdout,
 * stderr}; code is null when the process was killed (e.g. by the timeout). */
export function runBoveda(args, { env = {}, input, timeout = 30000, cwd } = {}) {
    const r = spawnSync(BIN, args, {
        env: childEnv(env),
        input,
        timeout,
        cwd,
        encoding: 'utf8',
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
    });
    if (r.error && r.error.code !== 'ETIMEDOUT') throw r.error;
    return { code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Generates a self-signed EC P-256 certificate for localhost and 127.0.0.1 into `dir`
 * with openssl. Returns {cert, key} paths. */
export function generateCert(dir = makeTempDir('boveda-tls-')) {
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    const r = spawnSync(
        'openssl',
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out',
            cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
        { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`openssl failed: ${r.stderr}`);
    return { cert, key };
}

/** Response headers as a plain object with lower-case names, plus get(name). */
function headerObject(h) {
    const obj = {};
    for (const [k, v] of h.entries()) obj[k] = v; // Headers joins repeated fields with ", "
    Object.defineProperty(obj, 'get', { value: (name) => obj[String(name).toLowerCase()] ?? null, enumerable: false });
    return obj;
}

function parseLine(line) {
    if (!line.startsWith('{')) return null;
    try {
        return JSON.parse(line);
    } catch {
        return null;
    }
}

/**
 * Starts `boveda serve` (or `boveda <args>` when args is given, e.g. ['serve', '--config', f])
 * and waits until it logs that it listens.
 * Defaults (each overridable through env): a fresh BOVEDA_DATA_DIR, BOVEDA_HTTP_LISTEN=
 * 127.0.0.1:0, a random 48-character BOVEDA_ADMIN_TOKEN, BOVEDA_LOG_LEVEL=info,
 * BOVEDA_THREADS=2. When env sets BOVEDA_HTTPS_LISTEN, it also waits for the TLS listener
 * and sets httpsUrl.
 */
export async function startServer({ env = {}, args = ['serve'] } = {}) {
    if (!fs.existsSync(BIN)) throw new Error(`boveda binary not found at ${BIN}: run make build or set BOVEDA_BIN`);
    const dataDir = env.BOVEDA_DATA_DIR ?? makeTempDir();
    const base = {
        BOVEDA_DATA_DIR: dataDir,
        BOVEDA_HTTP_LISTEN: '127.0.0.1:0',
        BOVEDA_ADMIN_TOKEN: randomToken(48),
        BOVEDA_LOG_LEVEL: 'info',
        BOVEDA_THREADS: '2',
        BOVEDA_MFA_LOGIN_POLICY: 'enrolled', // tests of policy "all" set it themselves
    };
    const srv = new Server({ ...base, ...env }, args, dataDir);
    await srv._start();
    return srv;
}

class Server {
    constructor(env, args, dataDir) {
        this.env = env; // the BOVEDA_* settings given to the process (updated on restart)
        this.args = args;
        this.dataDir = dataDir;
        this.adminToken = env.BOVEDA_ADMIN_TOKEN ?? null;
        this.url = null;
        this.httpsUrl = null;
        this.logs = []; // parsed JSON stderr lines, across restarts
        this.stderrLines = []; // every stderr line, raw, across restarts
        this.stdout = '';
        this.exit = null; // {code, signal} of the last process once it has exited
        this.child = null;
        this._logWaiters = [];
    }

    /** Everything the server(s) wrote on stderr so far. */
    get stderr() {
        return this.stderrLines.join('\n');
    }

    get running() {
        return this.child !== null && this.exit === null;
    }

    _wantHttp() {
        return this.env.BOVEDA_HTTP_LISTEN !== ''; // unset: the default (or a --config file) applies
    }

    _wantHttps() {
        return (this.env.BOVEDA_HTTPS_LISTEN ?? '') !== '';
    }

    _start() {
        this.exit = null;
        this.url = null;
        this.httpsUrl = null;
        const child = spawn(BIN, this.args, { env: childEnv(this.env), stdio: ['ignore', 'pipe', 'pipe'] });
        this.child = child;
        live.add(child);
        // A server a test forgot to stop must not keep the test process alive: every wait
        // below holds its own timer, and the exit handler kills what is left.
        child.unref();
        child.stdout.unref?.();
        child.stderr.unref?.();
        let partial = '';
        const onLine = (line) => {
            this.stderrLines.push(line);
            const obj = parseLine(line);
            if (obj === null) return;
            this.logs.push(obj);
            if (obj.msg === 'listening' && typeof obj.url === 'string') {
                if (obj.tls === true || obj.url.startsWith('https:')) this.httpsUrl = obj.url;
                else this.url = obj.url;
            }
            this._logWaiters = this._logWaiters.filter((w) => !w.check(obj));
        };
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (chunk) => {
            partial += chunk;
            let nl;
            while ((nl = partial.indexOf('\n')) >= 0) {
                onLine(partial.slice(0, nl));
                partial = partial.slice(nl + 1);
            }
        });
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (chunk) => {
            this.stdout += chunk;
        });
        this._closed = new Promise((resolve) => {
            const closed = (code, signal) => {
                if (this.exit !== null) return;
                if (partial !== '') onLine(partial);
                partial = '';
                live.delete(child);
                this.exit = { code, signal };
                resolve(this.exit);
            };
            child.on('close', closed);
            child.on('error', (err) => {
                // spawn failed (or kill failed on a gone process): nothing more will come
                this.stderrLines.push(`spawn ${BIN}: ${err.message}`);
                if (child.pid === undefined) closed(null, null);
            });
        });

        return new Promise((resolve, reject) => {
            let done = false;
            const finish = (err) => {
                if (done) return;
                done = true;
                clearTimeout(timer);
                clearInterval(poll);
                if (err) {
                    if (this.exit === null) child.kill('SIGKILL');
                    reject(err);
                } else resolve(this);
            };
            const ready = () =>
                (!this._wantHttp() || this.url !== null) && (!this._wantHttps() || this.httpsUrl !== null);
            const poll = setInterval(() => {
                if (ready()) finish();
            }, 10);
            const timer = setTimeout(
                () => finish(new Error(`boveda did not report listening within ${START_TIMEOUT_MS} ms; stderr:\n${this.stderr}`)),
                START_TIMEOUT_MS,
            );
            this._closed.then((e) => {
                if (ready()) return; // resolved by the poll already or about to be
                finish(new Error(`boveda exited early (code ${e.code}, signal ${e.signal}); stderr:\n${this.stderr}`));
            });
        });
    }

    /** Resolves with the first log line (parsed) matching pred, looking at lines already
     * captured first; rejects after timeoutMs. */
    waitForLog(pred, timeoutMs = 5000) {
        const hit = this.logs.find(pred);
        if (hit) return Promise.resolve(hit);
        return new Promise((resolve, reject) => {
            const w = {
                check: (obj) => {
                    if (!pred(obj)) return false;
                    clearTimeout(t);
                    resolve(obj);
                    return true;
                },
            };
            const t = setTimeout(() => {
                this._logWaiters = this._logWaiters.filter((x) => x !== w);
                reject(new Error(`no matching log line within ${timeoutMs} ms; stderr:\n${this.stderr}`));
            }, timeoutMs);
            this._logWaiters.push(w);
        });
    }

    /**
     * HTTP request to the plain listener with fetch (keep-alive).
     * body: a string/Buffer/Uint8Array is sent as is (give the content-type header yourself;
     * fetch labels a string text/plain); any other value is sent as JSON with content-type
     * application/json. token: sent as `Authorization: Bearer <token>`.
     * Returns {status, headers, json, text}; json is the parsed body when the content type
     * is JSON or problem+json (null otherwise).
     */
    async request(method, urlPath, { body, headers = {}, token, signal } = {}) {
        if (this.url === null) throw new Error('server has no plain HTTP listener');
        const h = { ...headers };
        let payload;
        if (body !== undefined && body !== null) {
            if (typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer) {
                payload = body;
            } else {
                payload = JSON.stringify(body);
                if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
            }
        }
        if (token !== undefined && token !== null) h.authorization = `Bearer ${token}`;
        const res = await fetch(this.url + urlPath, { method, headers: h, body: payload, redirect: 'manual', signal });
        const text = await res.text();
        const ct = res.headers.get('content-type') || '';
        let json = null;
        if (/^application\/(problem\+)?json\b/i.test(ct) && text !== '') {
            try {
                json = JSON.parse(text);
            } catch {
                json = null;
            }
        }
        return { status: res.status, headers: headerObject(res.headers), json, text };
    }

    /** Runs `boveda <args>` with the same settings (data dir, token, ...) to completion.
     * Returns {code, signal, stdout, stderr}. Synchronous; awaiting it is harmless. */
    run(args, { input, env = {}, timeout } = {}) {
        return runBoveda(args, { env: { ...this.env, ...env }, input, timeout });
    }

    /** Sends `sig` and waits for the process to exit. Returns {code, signal}. */
    async signal(sig) {
        if (!this.running) return this.exit;
        this.child.kill(sig);
        return this._waitExit();
    }

    async _waitExit() {
        let timer;
        const timeout = new Promise((resolve) => {
            timer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS);
        });
        const r = await Promise.race([this._closed, timeout]);
        clearTimeout(timer);
        if (r === null) {
            this.child.kill('SIGKILL');
            await this._closed;
            throw new Error(`boveda did not exit within ${STOP_TIMEOUT_MS} ms; stderr:\n${this.stderr}`);
        }
        return r;
    }

    /** The sanitizer report (ASan/LSan/UBSan) in stderr, from its first line on (at most
     * 20000 characters), or null when there is none. */
    sanitizerReport() {
        const i = this.stderrLines.findIndex((l) => SANITIZER_RE.test(l));
        if (i < 0) return null;
        const from = i > 0 && /^=+$/.test(this.stderrLines[i - 1]) ? i - 1 : i;
        return this.stderrLines.slice(from).join('\n').slice(0, 20000);
    }

    /** Graceful stop (SIGTERM) and wait. Throws when the exit status is not 0 or a sanitizer
     * reported an error, unless check is false. Returns {code, signal}. */
    async stop({ check = true } = {}) {
        const e = await this.signal('SIGTERM');
        if (check && e !== null) {
            const report = this.sanitizerReport();
            if (report) throw new Error(`sanitizer report in boveda's stderr:\n${report}`);
            if (e.code !== 0) throw new Error(`boveda exited with code ${e.code} signal ${e.signal}; stderr:\n${this.stderr}`);
        }
        return e;
    }

    /** SIGKILL and wait. Returns {code, signal}. */
    async kill() {
        return this.signal('SIGKILL');
    }

    /** Starts the server again on the same data directory and the same port(s), after
     * stopping it first if it still runs. */
    async restart() {
        if (this.running) await this.stop();
        const port = (u) => new URL(u).port;
        if (this.url !== null) this.env.BOVEDA_HTTP_LISTEN = `127.0.0.1:${port(this.url)}`;
        if (this.httpsUrl !== null) this.env.BOVEDA_HTTPS_LISTEN = `127.0.0.1:${port(this.httpsUrl)}`;
        await this._start();
        return this;
    }
}
