// Async fixture: prints one `exec <callId>` line per execution (so tests can count executions),
// sleeps `?ms=` milliseconds (default 0), and echoes the body.
import { setTimeout as delay } from 'node:timers/promises';

export default async function execLog(request, context) {
  console.log(`exec ${context.callId}`);
  const raw = Array.isArray(request.query.ms) ? request.query.ms[0] : request.query.ms;
  const ms = Number(raw);
  if (Number.isFinite(ms) && ms > 0) await delay(ms);
  return { status: 200, headers: { 'content-type': 'text/plain' }, body: request.body };
}
