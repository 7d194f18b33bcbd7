// Open-loop GET load at a fixed rate (what wrk cannot do): requests are scheduled every
// 1/rate seconds whether or not earlier ones have answered, and latency is measured from
// the scheduled time, so a stall counts against the server (no coordinated omission).
//   node bench/rate_get.mjs BASE_URL TOKEN RATE SECONDS PATH...   (paths picked round-robin)
import http from 'node:http';

const [base, token, rateS, secondsS, ...paths] = process.argv.slice(2);
const rate = Number(rateS), seconds = Number(secondsS);
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
const url = new URL(base);
const lat = [];
let errors = 0, done = 0, i = 0;
const total = Math.floor(rate * seconds);
const t0 = performance.now();

await new Promise((resolve) => {
    const fire = () => {
        const now = performance.now();
        // issue every request whose scheduled time has come
        while (i < total && t0 + (i * 1000) / rate <= now) {
            const scheduled = t0 + (i * 1000) / rate;
            const path = paths[i % paths.length];
            i++;
            const req = http.request({ host: url.hostname, port: url.port, path, agent,
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
lat.sort((a, b) => a - b);
const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2);
const elapsed = (performance.now() - t0) / 1000;
console.log(`${(done / elapsed).toFixed(0)} req/s achieved (target ${rate}), p50 ${q(0.5)}ms, p99 ${q(0.99)}ms, errors ${errors}`);
agent.destroy();
