// The demo's inbox: where `make demo` points Bóveda's notifications so that one-time codes
// and movement notices can be read without a real SMS provider or mail server.
//   - an SMS "webhook provider" (POST /sms, JSON {to, from, body, id}) on HTTP
//   - a minimal SMTP sink (no TLS, no AUTH; loopback only) that keeps each message
// Every message is printed on standard output and appended to the file given as the first
// argument. Loopback only; for demonstrations, never for production.
//
//   node scripts/demo-inbox.mjs demo-data/inbox.log [smsPort=8025] [smtpPort=2525]
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const [logFile, smsPort = '8025', smtpPort = '2525'] = process.argv.slice(2);
if (!logFile) {
    console.error('usage: node demo-inbox.mjs LOGFILE [SMS_PORT] [SMTP_PORT]');
    process.exit(2);
}

function record(kind, to, text) {
    const line = `${new Date().toISOString()} ${kind} to ${to}\n${text.trim()}\n\n`;
    fs.appendFileSync(logFile, line, { mode: 0o600 });
    process.stdout.write(`\n  [inbox] ${kind} to ${to}: ${text.trim().split('\n')[0].slice(0, 200)}\n`);
}

let n = 0;
http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c) => {
        if (raw.length < 65536) raw += c;
    });
    req.on('end', () => {
        let j = {};
        try {
            j = JSON.parse(raw);
        } catch {
            j = {};
        }
        if (req.method !== 'POST' || typeof j.to !== 'string' || typeof j.body !== 'string') {
            res.writeHead(400, { 'content-type': 'application/json' });
            res.end('{"error":"expected POST {to, body}"}');
            return;
        }
        record('SMS', j.to, j.body);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: `demo-${++n}` }));
    });
}).listen(Number(smsPort), '127.0.0.1');

// The body of a MIME message with its text/plain part decoded (quoted-printable or base64).
function plainText(msg) {
    const parts = msg.split(/\r?\n--[^\r\n]*\r?\n/);
    for (const part of parts) {
        const sep = part.search(/\r?\n\r?\n/);
        if (sep < 0) continue;
        const head = part.slice(0, sep);
        if (!/content-type:\s*text\/plain/i.test(head)) continue;
        const body = part.slice(sep).replace(/^\r?\n\r?\n/, '').replace(/\r?\n--[\s\S]*$/, '');
        if (/content-transfer-encoding:\s*base64/i.test(head)) return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
        if (/content-transfer-encoding:\s*quoted-printable/i.test(head)) {
            const bytes = body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)));
            return Buffer.from(bytes, 'latin1').toString('utf8');
        }
        return body;
    }
    return msg.split(/\r?\n\r?\n/).slice(1).join('\n');
}

net.createServer((sock) => {
    let buf = '';
    let inData = false;
    let rcpt = [];
    let data = '';
    const say = (s) => sock.write(`${s}\r\n`);
    say('220 demo-inbox ESMTP');
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    sock.on('data', (chunk) => {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).replace(/\r$/, '');
            buf = buf.slice(nl + 1);
            if (inData) {
                if (line === '.') {
                    inData = false;
                    record('E-mail', rcpt.join(', '), plainText(data));
                    data = '';
                    rcpt = [];
                    say('250 OK queued');
                } else if (data.length < 4 * 1024 * 1024) {
                    data += (line.startsWith('..') ? line.slice(1) : line) + '\r\n';
                }
                continue;
            }
            const cmd = line.slice(0, 4).toUpperCase();
            if (cmd === 'EHLO' || cmd === 'HELO') say('250 demo-inbox');
            else if (cmd === 'MAIL') say('250 OK');
            else if (cmd === 'RCPT') {
                rcpt.push(line.replace(/^RCPT TO:\s*/i, '').replace(/[<>]/g, ''));
                say('250 OK');
            } else if (cmd === 'DATA') {
                inData = true;
                say('354 end with <CRLF>.<CRLF>');
            } else if (cmd === 'RSET') {
                rcpt = [];
                say('250 OK');
            } else if (cmd === 'NOOP') say('250 OK');
            else if (cmd === 'QUIT') {
                say('221 bye');
                sock.end();
            } else say('502 not implemented');
        }
    });
}).listen(Number(smtpPort), '127.0.0.1');
