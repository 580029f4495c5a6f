/**
 * HTTP routes of async invocations (OpenFaaS paths): ANY /async-function/:name[/*] answers 202
 * with X-Call-Id once the call is in the fsync'd journal (a refused submit is answered with its
 * error and recorded as a 'rejected' invocation); GET /system/dead-letters and
 * POST /system/dead-letters/:id/replay manage the dead-letter queue; GET /system/async counts;
 * POST /system/async/status gives the state of many calls at once.
 * GET /system/invocations/:id consults the dispatcher through RouteDeps.asyncInvocation.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { SkiffConfig } from '../config.ts';
import { SkiffError, toSkiffError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { AsyncDispatcher } from './async/dispatcher.ts';
import { EMPTY_BODY, headerBytes, invocationRequestOf, openRequest, readBody, sendError, sendJson, type RequestContext } from './http.ts';
import type { FunctionRegistry } from './registry.ts';

export interface AsyncRouteDeps {
  config: SkiffConfig;
  dispatcher: AsyncDispatcher;
  logger: Logger;
  /** Consulted on an unknown function, as the sync route does: a deploy through a peer may not have arrived yet. */
  registry?: Pick<FunctionRegistry, 'get' | 'reloadOnMiss'>;
}

const IDEMPOTENCY_KEY_MAX = 256;
const DEAD_LETTER_LIST_MAX = 1000;
const DEAD_LETTER_LIST_DEFAULT = 50;
const STATUS_BATCH_MAX = 1000;

/** Registers the async routes; call before the catch-all routes. */
export function registerAsyncRoutes(app: TemplatedApp, deps: AsyncRouteDeps): void {
  app.any('/async-function/:name', (res, req) => handleSubmit(res, req, deps));
  app.any('/async-function/:name/*', (res, req) => handleSubmit(res, req, deps));

  app.get('/system/dead-letters', (res, req) => {
    const ctx = openRequest(res);
    const params = new URLSearchParams(req.getQuery() ?? '');
    answer(ctx, deps, async () => {
      const limitText = params.get('limit');
      const limit = limitText === null ? DEAD_LETTER_LIST_DEFAULT : Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > DEAD_LETTER_LIST_MAX) {
        throw new SkiffError('BAD_REQUEST', `limit must be an integer from 1 to ${DEAD_LETTER_LIST_MAX}`);
      }
      sendJson(ctx, 200, deps.dispatcher.deadLetters({ functionName: params.get('function') ?? undefined, limit }));
    });
  });
  app.post('/system/dead-letters/:id/replay', (res, req) => {
    const ctx = openRequest(res);
    const id = req.getParameter(0) ?? '';
    // The request body (if any) is not used; read it so the connection stays usable.
    const body = readBody(ctx, Number(req.getHeader('content-length') || 0), deps.config.gateway.maxBodyBytes);
    answer(ctx, deps, async () => {
      await body;
      const view = await deps.dispatcher.replay(id);
      sendJson(ctx, 202, view, { 'x-call-id': id });
    });
  });
  app.post('/system/async/status', (res, req) => {
    const ctx = openRequest(res);
    const body = readBody(ctx, Number(req.getHeader('content-length') || 0), deps.config.gateway.maxBodyBytes);
    answer(ctx, deps, async () => {
      let ids: unknown;
      try {
        ids = (JSON.parse((await body).toString('utf8')) as { ids?: unknown }).ids;
      } catch {
        throw new SkiffError('BAD_REQUEST', 'body must be JSON: { "ids": ["…"] }');
      }
      if (!Array.isArray(ids) || ids.length > STATUS_BATCH_MAX || !ids.every((id) => typeof id === 'string')) {
        throw new SkiffError('BAD_REQUEST', `ids must be an array of at most ${STATUS_BATCH_MAX} strings`);
      }
      sendJson(ctx, 200, deps.dispatcher.briefStatuses(ids as string[]));
    });
  });
  app.get('/system/async', (res) => {
    const ctx = openRequest(res);
    sendJson(ctx, 200, deps.dispatcher.stats());
  });
}

function answer(ctx: RequestContext, deps: AsyncRouteDeps, work: () => Promise<void>): void {
  work().catch((err: unknown) => {
    const skiffError = toSkiffError(err);
    if (skiffError.code === 'INTERNAL_ERROR') deps.logger.error({ err }, 'request failed');
    sendError(ctx, skiffError, retryAfter(skiffError, deps));
  });
}

/** Retry-After on the refusals that pass with time (a full queue or journal). */
function retryAfter(err: SkiffError, deps: AsyncRouteDeps): Record<string, string> {
  return err.code === 'QUEUE_FULL' || err.code === 'JOURNAL_FULL' ? { 'retry-after': String(deps.config.gateway.retryAfterSeconds) } : {};
}

function handleSubmit(res: HttpResponse, req: HttpRequest, deps: AsyncRouteDeps): void {
  const ctx = openRequest(res);
  const receivedAtMs = Date.now();
  const request = invocationRequestOf(req, '/async-function/', receivedAtMs, 'async');
  const { functionName, headers } = request;
  // A refused submit is answered, then stored as a 'rejected' invocation (request bytes: what
  // was read of the body, 0 when the body itself was refused).
  const reject = (err: SkiffError): void => {
    if (err.code === 'INTERNAL_ERROR') deps.logger.error({ err: err.cause ?? err }, 'async submit failed');
    sendError(ctx, err, { 'x-call-id': request.id, ...retryAfter(err, deps) });
    deps.dispatcher.recordRejected(request, err);
  };
  const { maxHeaderBytes, maxBodyBytes } = deps.config.gateway;
  if (headerBytes(headers) > maxHeaderBytes) {
    ctx.mustClose = true;
    reject(new SkiffError('HEADERS_TOO_LARGE', `request headers are over the limit of ${maxHeaderBytes} bytes`));
    return;
  }
  const declared = Number(headers['content-length'] ?? 0);
  const hasBody = declared > 0 || headers['transfer-encoding'] !== undefined;
  const bodyReady = hasBody ? readBody(ctx, declared, maxBodyBytes) : Promise.resolve(EMPTY_BODY);
  const submit = async (): Promise<void> => {
    request.body = await bodyReady;
    // A deploy through a peer gateway may not have reached us over PUB/SUB: ask storage.
    if (deps.registry && !deps.registry.get(functionName)) await deps.registry.reloadOnMiss();
    const idempotencyKey = headers['idempotency-key'] ?? '';
    if (idempotencyKey.length > IDEMPOTENCY_KEY_MAX) throw new SkiffError('BAD_REQUEST', `Idempotency-Key must be at most ${IDEMPOTENCY_KEY_MAX} characters`);
    const accepted = await deps.dispatcher.submit({
      id: request.id,
      functionName,
      method: request.method,
      path: request.path,
      query: request.query,
      headers,
      body: request.body,
      traceparent: request.traceparent,
      receivedAtMs,
      callbackUrl: headers['x-callback-url'] ?? '',
      idempotencyKey,
    });
    const replyHeaders: Record<string, string> = { 'x-call-id': accepted.id };
    if (accepted.duplicate) replyHeaders['x-idempotent-replay'] = 'true';
    sendJson(ctx, 202, { id: accepted.id, status: deps.dispatcher.status(accepted.id) ?? 'queued' }, replyHeaders);
  };
  submit().catch((err: unknown) => reject(toSkiffError(err)));
}
