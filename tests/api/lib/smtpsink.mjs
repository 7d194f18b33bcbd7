// A real SMTP server on loopback (the `smtp-server` package) that keeps every message it
// receives, for the e-mail notification tests. Optional STARTTLS (with a certificate the
// test generated) and AUTH PLAIN/LOGIN.
//
//   const sink = await startSmtpSink({ tls: { cert, key }, auth: { user: 'u', pass: 'p' } });
//   sink.url              // 'smtp://127.0.0.1:PORT'
//   sink.messages         // [{from, to: [...], raw, secure, user, headers, text, html, attachments}]
//   sink.reject = 550     // refuse RCPT with this code (0: accept)
//   await sink.waitFor((msgs) => msgs.length >= 1)
//   await sink.close()
import fs from 'node:fs';
import { SMTPServer } from 'smtp-server';

/** Splits a MIME message into headers (lower-case names, unfolded) and body. */
export function parseHeaders(raw) {
    const sep = raw.indexOf('\r\n\r\n');
    const head = raw.slice(0, sep).replace(/\r\n[ \t]+/g, ' ');
    const headers = {};
    for (const line of head.split('\r\n')) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    return { headers, body: raw.slice(sep + 4) };
}

function boundaryOf(ct) {
    const m = /boundary="?([^";]+)"?/i.exec(ct ?? '');
    return m ? m[1] : null;
}

/** Walks a MIME tree into leaf parts: [{contentType, disposition, filename, data: Buffer}]. */
export function mimeParts(raw) {
    const { headers, body } = parseHeaders(raw);
    const ct = headers['content-type'] ?? 'text/plain';
    const b = boundaryOf(ct);
    if (/^multipart\//i.test(ct) && b) {
        const out = [];
        const chunks = body.split(`--${b}`);
        for (const c of chunks.slice(1)) {
            if (c.startsWith('--')) break;
            out.push(...mimeParts(c.replace(/^\r\n/, '')));
        }
        return out;
    }
    const enc = (headers['content-transfer-encoding'] ?? '').toLowerCase();
    const data = enc === 'base64' ? Buffer.from(body.replace(/\s+/g, ''), 'base64') : Buffer.from(body);
    const fn = /filename="?([^";]+)"?/i.exec(headers['content-disposition'] ?? '');
    return [{ contentType: ct.split(';')[0].trim().toLowerCase(), disposition: headers['content-disposition'] ?? null, filename: fn ? fn[1] : null, data }];
}

/** Decodes an RFC 2047 encoded-word subject (B encoding). */
export function decodeSubject(s) {
    return (s ?? '').replace(/=\?UTF-8\?B\?([^?]*)\?=/gi, (_, b) => Buffer.from(b, 'base64').toString('utf8'));
}

export async function startSmtpSink({ tls = null, auth = null } = {}) {
    const state = { messages: [], waiters: [], reject: 0 };
    const opts = {
        logger: false,
        disableReverseLookup: true,
        authOptional: auth === null,
        authMethods: ['PLAIN', 'LOGIN'],
        size: 10 * 1024 * 1024,
        onAuth(a, session, cb) {
            if (auth !== null && a.username === auth.user && a.password === auth.pass) return cb(null, { user: a.username });
            return cb(new Error('Invalid username or password'));
        },
        onRcptTo(address, session, cb) {
            if (state.reject) {
                const e = new Error('mailbox unavailable');
                e.responseCode = state.reject;
                return cb(e);
            }
            return cb();
        },
        onData(stream, session, cb) {
            const bufs = [];
            stream.on('data', (d) => bufs.push(d));
            stream.on('end', () => {
                const raw = Buffer.concat(bufs).toString('utf8');
                const { headers } = parseHeaders(raw);
                const parts = mimeParts(raw);
                const text = parts.find((p) => p.contentType === 'text/plain' && !p.filename);
                const html = parts.find((p) => p.contentType === 'text/html' && !p.filename);
                state.messages.push({
                    from: session.envelope.mailFrom?.address ?? null,
                    to: session.envelope.rcptTo.map((r) => r.address),
                    raw,
                    secure: session.secure,
                    user: session.user ?? null,
                    headers,
                    subject: decodeSubject(headers.subject),
                    text: text ? text.data.toString('utf8') : null,
                    html: html ? html.data.toString('utf8') : null,
                    attachments: parts.filter((p) => p.filename),
                });
                state.waiters = state.waiters.filter((w) => !w());
                cb(null, 'queued');
            });
        },
    };
    if (tls) {
        opts.key = fs.readFileSync(tls.key);
        opts.cert = fs.readFileSync(tls.cert);
    } else {
        opts.disabledCommands = ['STARTTLS'];
        opts.allowInsecureAuth = true;
    }
    const server = new SMTPServer(opts);
    server.on('error', () => {});
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
        url: `smtp://127.0.0.1:${server.server.address().port}`,
        get messages() {
            return state.messages;
        },
        get reject() {
            return state.reject;
        },
        set reject(v) {
            state.reject = v;
        },
        waitFor(pred, timeoutMs = 20000) {
            if (pred(state.messages)) return Promise.resolve(state.messages);
            return new Promise((resolve, reject) => {
                const t = setTimeout(() => reject(new Error(`smtpsink: condition not met within ${timeoutMs} ms (${state.messages.length} messages)`)), timeoutMs);
                state.waiters.push(() => {
                    if (!pred(state.messages)) return false;
                    clearTimeout(t);
                    resolve(state.messages);
                    return true;
                });
            });
        },
        async close() {
            await new Promise((resolve) => server.close(resolve));
        },
    };
}
