// A small parser for the Prometheus text exposition format 0.0.4, enough for assertions.

/** Parses exposition text into {samples: [{name, labels, value}], types: {family: type}}.
 * Throws on a line that is not a comment, blank or a valid sample. */
export function parseMetrics(text) {
    const samples = [];
    const types = {};
    for (const line of text.split('\n')) {
        if (line === '') continue;
        if (line.startsWith('#')) {
            const m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
            if (m) types[m[1]] = m[2];
            continue;
        }
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( \d+)?$/.exec(line);
        if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
        const labels = {};
        if (m[3]) {
            const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/y;
            let lm;
            let consumed = 0;
            while ((lm = re.exec(m[3])) !== null) {
                labels[lm[1]] = lm[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
                consumed = re.lastIndex;
            }
            if (consumed !== m[3].length) throw new Error(`bad labels in ${JSON.stringify(line)}`);
        }
        const value = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
        if (Number.isNaN(value) && m[4] !== 'NaN') throw new Error(`bad value in ${JSON.stringify(line)}`);
        samples.push({ name: m[1], labels, value });
    }
    return { samples, types };
}

/** Samples named `name` whose labels include every pair in `labels`. */
export function find(metrics, name, labels = {}) {
    return metrics.samples.filter(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
}

/** The value of the single sample named `name` with `labels` (undefined if none; throws if
 * several match). */
export function value(metrics, name, labels = {}) {
    const hits = find(metrics, name, labels);
    if (hits.length > 1) throw new Error(`${hits.length} samples match ${name} ${JSON.stringify(labels)}`);
    return hits.length ? hits[0].value : undefined;
}
