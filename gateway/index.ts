/**
 * gateway/: the HTTP front door (uWebSockets.js) with the initiator and the bus ROUTER inside.
 * Public surface.
 */
import { createRequire } from 'node:module';
import type { us_listen_socket } from 'uWebSockets.js';
import type { SkiffConfig } from '../config.ts';
import type { Logger } from '../logger.ts';
import { RuntimeMonitor } from '../runtime-stats.ts';
import type { Storage } from '../storage/index.ts';
import { AsyncDispatcher } from './async/dispatcher.ts';
import { registerAsyncRoutes } from './async-routes.ts';
import { Initiator } from './initiator.ts';
import { FunctionRegistry } from './registry.ts';
import { startControlChannel } from './cluster.ts';
import { registerRoutes } from './routes.ts';

export { traceIdOf } from './initiator.ts';
export { parseDeployRequest, FUNCTION_NAME_PATTERN, FUNCTION_LIMIT_BOUNDS } from './definition.ts';
export type { DeployRequest } from './definition.ts';
export type { ExecutorRuntime } from './query-routes.ts';

/** A running gateway. */
export interface Gateway {
  /** Base URL, e.g. http://127.0.0.1:8080. */
  readonly url: string;
  readonly port: number;
  /** The bus endpoint executors connect to. */
  readonly busEndpoint: string;
  /** Resolves once `count` executors are connected; rejects after `timeoutMs`. */
  waitForExecutors(count: number, timeoutMs: number): Promise<void>;
  /** Stops accepting requests, fails in-flight calls, closes the bus. Idempotent. */
  close(): Promise<void>;
}

/** Starts a gateway on the configured host/port (port 0 picks a free one) using `storage`. */
export async function startGateway(config: SkiffConfig, storage: Storage, logger: Logger): Promise<Gateway> {
  // uWS reads its own header limit from the environment when it loads; keep it above ours so
  // callers get Skiff's JSON 431 rather than the parser's bare one.
  process.env.UWS_HTTP_MAX_HEADERS_SIZE ??= String(config.gateway.maxHeaderBytes * 2);
  // A native CommonJS addon: load it with require so its exports are all there.
  const uws = createRequire(import.meta.url)('uWebSockets.js') as typeof import('uWebSockets.js');
  const registry = new FunctionRegistry(storage, config);
  await registry.load();
  const initiator = new Initiator(config, registry, storage, logger);
  const busEndpoint = await initiator.start();
  const control = await startControlChannel(config, registry, initiator);

  const tls = config.gateway.tls;
  const app = tls.certFile ? uws.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile }) : uws.App();
  const dispatcher = AsyncDispatcher.start({ config, initiator, registry, storage, logger });
  const runtime = new RuntimeMonitor();
  registerAsyncRoutes(app, { config, dispatcher, logger, registry });
  registerRoutes(app, {
    config,
    registry,
    initiator,
    storage,
    logger,
    asyncInvocation: (id) => dispatcher.describe(id),
    runtime: () => runtime.snapshot(),
    executorRuntimes: () => initiator.executors().map((peer) => ({ nodeId: peer.hello.nodeId, lastSeenMs: peer.lastSeenMs, runtime: peer.runtime })),
  });

  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(config.gateway.host, config.gateway.port, (socket) => {
      if (socket) resolve(socket);
      else reject(new Error(`gateway could not listen on ${config.gateway.host}:${config.gateway.port}`));
    });
  });
  const port = uws.us_socket_local_port(listenSocket);
  const scheme = tls.certFile ? 'https' : 'http';
  const url = `${scheme}://${config.gateway.host}:${port}`;
  logger.info({ url, busEndpoint }, 'gateway listening');

  let closed: Promise<void> | undefined;
  return {
    url,
    port,
    busEndpoint,
    waitForExecutors: (count, timeoutMs) => initiator.waitForExecutors(count, timeoutMs),
    close() {
      closed ??= (async () => {
        uws.us_listen_socket_close(listenSocket);
        const dispatcherClosed = dispatcher.close();
        initiator.close();
        control.close();
        runtime.close();
        await dispatcherClosed;
        (app as typeof app & { close(): void }).close();
      })();
      return closed;
    },
  };
}
