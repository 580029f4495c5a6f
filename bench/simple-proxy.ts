/**
 * The baseline "simple gateway" a user could write in an afternoon: a plain node:http reverse
 * proxy that turns `ANY /function/<name>` into the Fn http-stream call to one warm container over
 * its unix socket (keep-alive agent) and maps the answer back. No registry, no bus, no records.
 * Runs in its own process: `node --import tsx bench/simple-proxy.ts <socketPath>`; prints
 * `listening <port>` on 127.0.0.1 when ready.
 */
import http from 'node:http';

const socketPath = process.argv[2];
if (!socketPath) {
  process.stderr.write('usage: simple-proxy.ts <container socket path>\n');
  process.exit(2);
}

const FN_HTTP_H = 'fn-http-h-';
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'host', 'expect', 'upgrade']);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
let callSeq = 0;

const server = http.createServer((req, res) => {
  const headers: Record<string, string> = {
    'fn-call-id': `proxy-${++callSeq}`,
    'fn-deadline': new Date(Date.now() + 30_000).toISOString(),
    'fn-http-method': req.method ?? 'GET',
    'fn-http-request-url': req.url ?? '/',
  };
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    headers[`${FN_HTTP_H}${name}`] = Array.isArray(value) ? value.join(', ') : value;
    if (name === 'content-type') headers['content-type'] = headers[`${FN_HTTP_H}${name}`];
  }
  const upstream = http.request({ socketPath, path: '/call', method: 'POST', headers, agent }, (answer) => {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value === undefined || !name.startsWith(FN_HTTP_H)) continue;
      const bare = name.slice(FN_HTTP_H.length);
      if (!HOP_BY_HOP.has(bare)) out[bare] = Array.isArray(value) ? value.join(', ') : value;
    }
    const status = Number(answer.headers['fn-http-status'] ?? answer.statusCode ?? 502);
    res.writeHead(status, out);
    answer.pipe(res);
  });
  upstream.on('error', (err) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(err.message);
  });
  req.pipe(upstream);
});

server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  agent.destroy();
});
