// Small helpers the API tests share: `boveda admin ... --json`, reading the database with
// sqlite3, and RFC 6238 codes computed on the test's side.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import path from 'node:path';

import { PROBLEM_BASE } from './server.mjs';

/** Runs `boveda admin <args> --json` with the server's settings; asserts success and
 * returns the last line of its output parsed. */
export function adminJson(srv, args, input) {
    const r = srv.run(['admin', ...args, '--json'], { input });
    assert.equal(r.code, 0, `boveda admin ${args.join(' ')} failed: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** The output of one SQL statement on the server's database (sqlite3 CLI), trimmed. It waits
 * up to 10 s for the server's writer (a busy timeout), as any second connection must. */
export function sqlite(srv, sql) {
    const r = spawnSync('sqlite3', ['-cmd', '.timeout 10000', path.join(srv.dataDir, 'boveda.db'), sql],
        { encoding: 'utf8' });
    assert.equal(r.status, 0, `sqlite3 failed: ${r.stderr}`);
    return r.stdout.trim();
}

/** RFC 4648 base32 (no padding) to bytes. */
export function base32Decode(s) {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
    let bits = 0;
    let value = 0;
    const out = [];
    for (const ch of s) {
        value = (value << 5) | alphabet.indexOf(ch);
        bits += 5;
        if (bits >= 8) {
            out.push((value >>> (bits - 8)) & 0xff);
            bits -= 8;
        }
    }
    return Buffer.from(out);
}

/** RFC 6238 TOTP: 6 digits, 30 s steps, at unix time t (seconds), HMAC `alg` (sha1, sha256,
 * sha512). */
export function totp(seed, t, alg = 'sha1') {
    const msg = Buffer.alloc(8);
    msg.writeBigUInt64BE(BigInt(Math.floor(t / 30)));
    const mac = createHmac(alg, seed).update(msg).digest();
    const off = mac[mac.length - 1] & 0xf;
    const v = ((mac[off] & 0x7f) << 24) | (mac[off + 1] << 16) | (mac[off + 2] << 8) | mac[off + 3];
    return String(v % 1000000).padStart(6, '0');
}

/** Asserts a problem+json answer: status, type (PROBLEM_BASE + slug) and, when given, field. */
export function assertProblem(r, status, slug, field) {
    assert.equal(r.status, status, `status (body: ${r.text})`);
    assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(r.json.type, PROBLEM_BASE + slug, r.text);
    if (field !== undefined) assert.equal(r.json.field, field, r.text);
}

/** The `Authorization: Basic` value of an OAuth client {client_id, client_secret}. */
export function basicAuth(client) {
    return `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`;
}
