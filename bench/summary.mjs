// Seeds customers and loads GET /v1/me/summary at a fixed rate (run by bench/summary.sh,
// which starts the server and exports its BOVEDA_* settings for the admin commands).
//   node bench/summary.mjs API BOVEDA_BIN CUSTOMERS MOVEMENTS RATE SECONDS [TOKENS_FILE]
// With TOKENS_FILE it only seeds and writes the customers' tokens there (for bench_loadgen).
// Open loop, as bench/rate_get.mjs: request i is due at t0 + i/rate whether or not earlier
// ones answered, and its latency counts from that due time (no coordinated omission).
import { spawnSync } from 'node:child_process';
import http from 'node:http';

const [api, bin, customersS, movementsS, rateS, secondsS, tokensFile] = process.argv.slice(2);
const customers = Number(customersS), movements = Number(movementsS);
const rate = Number(rateS), seconds = Number(secondsS);
const PASSWORD = 'bench password 0123456789';
const adminH = { authorization: `Bearer ${process.env.BOVEDA_ADMIN_TOKEN}`, 'content-type': 'application/json' };

function admin(args, input) {
    const r = spawnSync(bin, ['admin', ...args, '--json'], { input, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`boveda admin ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop());
}
async function post(path, body, headers = adminH) {
    const r = await fetch(api + path, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const j = await r.json().catch(() => null);
    if (r.status >= 300) throw new Error(`${path}: ${r.status} ${JSON.stringify(j)}`);
    return j;
}

// ---- seed ----
const t0seed = performance.now();
const client = admin(['clients', 'create', '--name', 'bench', '--grant', 'password', '--scope',
    'openid banking:read', '--legacy-password']);
const basic = `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`;
const bank = await post('/v1/accounts', { type: 'internal', currency: 'EUR', holder_name: 'Bank', allow_negative: true });
const tokens = [];
let ref = 0;
for (let c = 0; c < customers; c++) {
    const username = `bench${c}`;
    const u = admin(['users', 'create', '--username', username, '--email', `${username}@example.test`,
        '--phone', `+346001${String(c).padStart(5, '0')}`, '--name', `Customer ${c}`, '--password-stdin'], `${PASSWORD}\n`);
    const accts = [];
    for (const type of ['checking', 'savings']) {
        accts.push(await post('/v1/accounts', { type, currency: 'EUR', holder_name: `Customer ${c}`, customer_id: u.id }));
    }
    for (let m = 0; m < movements; m++) {
        const a = accts[m % 2];
        const [debit, credit] = m % 3 === 2 ? [a, bank] : [bank, a];
        await post('/v1/ledger/transfers', { debit_account: debit.id, credit_account: credit.id, currency: 'EUR',
            amount: m % 3 === 2 ? '1.25' : '10.00', reference: `bench-${++ref}`, description: `movement ${m}` });
    }
    const t = await post('/oauth2/token', new URLSearchParams({ grant_type: 'password', username, password: PASSWORD,
        scope: 'openid banking:read' }).toString(), { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' });
    tokens.push(t.access_token);
}
// one request per customer: the answer is right and the profile cache is warm, as in use
for (const token of tokens) {
    const r = await fetch(`${api}/v1/me/summary`, { headers: { authorization: `Bearer ${token}` } });
    const j = await r.json();
    if (r.status !== 200 || j.accounts.length !== 2 || j.accounts[0].last_movements.length !== Math.min(4, Math.ceil(movements / 2))) {
        throw new Error(`summary check failed: ${r.status} ${JSON.stringify(j).slice(0, 300)}`);
    }
}
console.log(`seeded ${customers} customers x 2 accounts, ${movements} movements each, in ` +
    `${((performance.now() - t0seed) / 1000).toFixed(1)} s`);

// ---- tokens for the load generator (bench_loadgen), one per line ----
if (tokensFile) {
    const fs = await import('node:fs');
    fs.writeFileSync(tokensFile, `${tokens.join('\n')}\n`, { mode: 0o600 });
    process.exit(0);
}

// ---- load ----
const url = new URL(api);
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
const lat = [];
let errors = 0, done = 0, i = 0;
const total = Math.floor(rate * seconds);
const t0 = performance.now();
await new Promise((resolve) => {
    const fire = () => {
        const now = performance.now();
        while (i < total && t0 + (i * 1000) / rate <= now) {
            const scheduled = t0 + (i * 1000) / rate;
            const token = tokens[i % tokens.length];
            i++;
            const req = http.request({ host: url.hostname, port: url.port, path: '/v1/me/summary', agent,
                headers: { authorization: `Bearer ${token}` } }, (res) => {
                res.resume();
                res.on('end', () => {
                    if (res.statusCode !== 200) errors++;
                    lat.push(performance.now() - scheduled);
                    if (++done === total) resolve();
                });
            });
            req.on('error', () => { errors++; if (++done === total) resolve(); });
            req.end();
        }
        if (i < total) setTimeout(fire, 1);
    };
    fire();
});
const elapsed = (performance.now() - t0) / 1000;
agent.destroy();
lat.sort((a, b) => a - b);
const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
const p99 = q(0.99);
console.log(`GET /v1/me/summary: ${rate} req/s for ${seconds} s (open loop, ${customers} customers round-robin)`);
console.log(`  achieved ${(done / elapsed).toFixed(0)} req/s, p50 ${q(0.5).toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, ` +
    `max ${lat[lat.length - 1].toFixed(2)} ms, errors ${errors}`);
console.log(`  goal p99 <= 5 ms at 2,000 req/s: ${p99 <= 5 && errors === 0 && rate >= 2000 ? 'met' : 'NOT met'}`);
process.exit(errors === 0 ? 0 : 1);
