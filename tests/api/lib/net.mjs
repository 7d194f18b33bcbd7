// Raw TCP helpers for tests that must misbehave like a real client would (slow senders,
// header floods, disconnects), which fetch cannot do.
import net from 'node:net';

/** Host and port of an http:// URL. */
export function hostPort(url) {
    const u = new URL(url);
    return { host: u.hostname, port: Number(u.port) };
}

/**
 * Opens a TCP connection to url, writes `data` (string or Buffer, may be empty) and collects
 * what the server sends until it closes the connection or `waitMs` passes.
 * Returns {data, closed, error}: closed is true when the server closed (or reset) the
 * connection within waitMs; the socket is destroyed either way.
 */
export function exchange(url, data, { waitMs = 5000, endAfterWrite = false } = {}) {
    const { host, port } = hostPort(url);
    return new Promise((resolve) => {
        const chunks = [];
        let settled = false;
        const sock = net.connect({ host, port });
        const finish = (closed, error = null) => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            sock.destroy();
            resolve({ data: Buffer.concat(chunks).toString('latin1'), closed, error });
        };
        const timer = setTimeout(() => finish(false), waitMs);
        sock.on('connect', () => {
            if (data !== undefined && data.length > 0) sock.write(data);
            if (endAfterWrite) sock.end();
        });
        sock.on('data', (c) => chunks.push(c));
        sock.on('end', () => finish(true));
        sock.on('close', () => finish(true));
        sock.on('error', (e) => finish(true, e));
    });
}

/** Status code of the first HTTP/1.x response in raw text, or null. */
export function statusOf(raw) {
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
    return m ? Number(m[1]) : null;
}

/** Number of HTTP/1.x status lines in raw text (pipelined responses). */
export function countResponses(raw) {
    return (raw.match(/HTTP\/1\.[01] \d{3} /g) || []).length;
}

/** Opens a connection, writes data, and destroys the socket right away without reading:
 * a client that goes away mid-request. Resolves once the socket is gone. */
export function fireAndForget(url, data) {
    const { host, port } = hostPort(url);
    return new Promise((resolve) => {
        const sock = net.connect({ host, port }, () => {
            sock.write(data, () => {
                sock.destroy();
            });
        });
        sock.on('close', () => resolve());
        sock.on('error', () => resolve());
    });
}
