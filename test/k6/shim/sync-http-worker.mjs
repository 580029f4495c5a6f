// The adapter's HTTP engine: k6 requests are synchronous, so the script's thread posts each
// request here and blocks on a shared flag until this worker has the answer (see k6-http.ts).
import { parentPort } from 'node:worker_threads';

parentPort.once('message', ({ signal, port }) => {
  port.on('message', async (req) => {
    let reply;
    try {
      const res = await fetch(req.url, { method: req.method, headers: req.headers, body: req.body ?? undefined, redirect: 'manual' });
      const headers = {};
      res.headers.forEach((value, name) => {
        headers[name.replace(/(^|-)([a-z])/g, (_, dash, c) => dash + c.toUpperCase())] = value;
      });
      reply = { status: res.status, headers, body: await res.text(), error: '' };
    } catch (err) {
      reply = { status: 0, headers: {}, body: null, error: String(err && err.message ? err.message : err) };
    }
    port.postMessage(reply);
    Atomics.store(signal, 0, 1);
    Atomics.notify(signal, 0);
  });
});
