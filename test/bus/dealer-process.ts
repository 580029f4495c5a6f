/**
 * An executor's side of the bus in a process of its own, for tests that SIGKILL it: a BusDealer
 * that connects to SKIFF_TEST_ENDPOINT as SKIFF_TEST_NODE_ID (CURVE when SKIFF_TEST_CURVE holds
 * the client options as JSON), prints "connected" once the gateway answered, then idles.
 */
import { BusDealer, type CurveClientOptions } from '../../bus/index.ts';

const endpoint = process.env.SKIFF_TEST_ENDPOINT ?? '';
const nodeId = process.env.SKIFF_TEST_NODE_ID ?? 'child';
const heartbeatIntervalMs = Number(process.env.SKIFF_TEST_HEARTBEAT_MS ?? 60_000);
const curve = process.env.SKIFF_TEST_CURVE ? (JSON.parse(process.env.SKIFF_TEST_CURVE) as CurveClientOptions) : undefined;
if (endpoint === '') throw new Error('SKIFF_TEST_ENDPOINT is required');

const dealer = new BusDealer(
  { endpoint, hello: { nodeId, pid: process.pid, maxInFlight: 1, startedAtMs: Date.now() }, heartbeatIntervalMs, heartbeatMissLimit: 3, inFlight: () => 0, curve },
  { onMessage: () => {}, onConnected: () => process.stdout.write('connected\n') },
);
dealer.start();
// The dealer's timers are unref'd: keep the process up until it is killed.
setInterval(() => {}, 1 << 30);
