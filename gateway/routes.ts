/**
 * HTTP routes of the gateway (OpenFaaS-compatible paths where OpenFaaS has them). Each handler
 * reads what it needs from the uWS request synchronously, then works on a RequestContext.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { SkiffConfig } from '../config.ts';
import { SkiffError, toSkiffError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { describeDefinition, parseDeployRequest } from './definition.ts';
import { EMPTY_BODY, headerBytes, invocationRequestOf, openRequest, readBody, sendError, sendJson, sendResponse, type RequestContext } from './http.ts';
import type { Initiator } from './initiator.ts';
import { registerQueryRoutes, type QueryRouteDeps } from './query-routes.ts';
import type { FunctionRegistry } from './registry.ts';

export interface RouteDeps extends QueryRouteDeps {
  config: SkiffConfig;
  registry: FunctionRegistry;
  initiator: Initiator;
}

/** Registers every route on the app. */
export function registerRoutes(app: TemplatedApp, deps: RouteDeps): void {
  app.any('/function/:name', (res, req) => handleInvoke(res, req, deps));
  app.any('/function/:name/*', (res, req) => handleInvoke(res, req, deps));

  app.get('/system/functions', (res) => {
    const ctx = openRequest(res);
    sendJson(ctx, 200, deps.registry.list().map(describeDefinition));
  });
  app.get('/system/functions/:name', (res, req) => {
    const ctx = openRequest(res);
    const name = req.getParameter(0) ?? '';
    answer(ctx, deps.logger, async () => sendJson(ctx, 200, describeDefinition(deps.registry.require(name))));
  });
  app.put('/system/functions/:name', (res, req) => handleDeploy(res, req, deps, true));
  app.post('/system/functions', (res, req) => handleDeploy(res, req, deps, false));
  app.del('/system/functions/:name', (res, req) => {
    const ctx = openRequest(res);
    const name = req.getParameter(0) ?? '';
    answer(ctx, deps.logger, async () => {
      const removed = await deps.registry.remove(name);
      sendJson(ctx, 200, { deleted: removed.spec.name });
    });
  });

  registerQueryRoutes(app, deps);

  app.get('/healthz', (res) => sendJson(openRequest(res), 200, { status: 'ok' }));
  app.get('/readyz', (res) => {
    const ctx = openRequest(res);
    answer(ctx, deps.logger, async () => {
      const executors = deps.initiator.executors().length;
      let storageOk = true;
      let storageError = '';
      try {
        await deps.storage.checkWritable();
      } catch (err) {
        storageOk = false;
        storageError = (err as Error).message;
      }
      const ready = executors > 0 && storageOk;
      sendJson(ctx, ready ? 200 : 503, { ready, executors, inFlight: deps.initiator.inFlight, storage: storageOk ? 'writable' : storageError });
    });
  });

  app.any('/*', (res, req) => {
    const ctx = openRequest(res);
    sendError(ctx, new SkiffError('ROUTE_NOT_FOUND', `no route for ${req.getCaseSensitiveMethod()} ${req.getUrl()}`));
  });
}

/** Runs an async handler and turns any throw into a Skiff error response. */
function answer(ctx: RequestContext, logger: Logger, work: () => Promise<void>): void {
  work().catch((err: unknown) => {
    const skiffError = toSkiffError(err);
    if (skiffError.code === 'INTERNAL_ERROR') logger.error({ err }, 'request failed');
    sendError(ctx, skiffError);
  });
}

function handleDeploy(res: HttpResponse, req: HttpRequest, deps: RouteDeps, nameInPath: boolean): void {
  const ctx = openRequest(res);
  const name = nameInPath ? (req.getParameter(0) ?? '') : undefined;
  const declared = Number(req.getHeader('content-length') || 0);
  answer(ctx, deps.logger, async () => {
    const body = await readBody(ctx, declared, deps.config.gateway.maxDeployBytes).catch((err: unknown) => {
      throw toSkiffError(err);
    });
    const request = parseDeployRequest(body, name);
    const { definition, created } = await deps.registry.deploy(request);
    sendJson(ctx, created ? 201 : 200, describeDefinition(definition));
  });
}

function handleInvoke(res: HttpResponse, req: HttpRequest, deps: RouteDeps): void {
  const ctx = openRequest(res);
  const receivedAtMs = Date.now();
  const startedAt = performance.now();
  const request = invocationRequestOf(req, '/function/', receivedAtMs, 'sync');
  const { functionName, headers } = request;
  const replyHeaders = (): Record<string, string> => ({
    'x-call-id': request.id,
    'x-duration-ms': (performance.now() - startedAt).toFixed(3),
  });
  const rejectEarly = (err: SkiffError): void => {
    sendError(ctx, err, replyHeaders());
    deps.initiator.record(request, { status: err.statusCode, headers: {}, body: EMPTY_BODY, errorCode: err.code, errorMessage: err.message, result: undefined, executorNodeId: '' });
  };
  if (headerBytes(headers) > deps.config.gateway.maxHeaderBytes) {
    ctx.mustClose = true;
    rejectEarly(new SkiffError('HEADERS_TOO_LARGE', `request headers are over the limit of ${deps.config.gateway.maxHeaderBytes} bytes`));
    return;
  }
  const declared = Number(headers['content-length'] ?? 0);
  const hasBody = declared > 0 || headers['transfer-encoding'] !== undefined;
  const bodyReady = hasBody ? readBody(ctx, declared, deps.config.gateway.maxBodyBytes) : Promise.resolve(EMPTY_BODY);
  bodyReady.then(
    async (body) => {
      request.body = body;
      // A deploy through a peer gateway may not have reached us over PUB/SUB: ask storage.
      if (!deps.registry.get(functionName)) await deps.registry.reloadOnMiss();
      const outcome = await deps.initiator.invoke(request);
      const headersOut = { ...outcome.headers, ...replyHeaders() };
      sendResponse(ctx, outcome.status, headersOut, outcome.body);
      deps.initiator.record(request, outcome);
    },
    (err: unknown) => rejectEarly(toSkiffError(err)),
  );
}

