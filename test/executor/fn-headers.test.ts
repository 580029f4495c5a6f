import { describe, expect, it } from 'vitest';
import type { InvokeHeader } from '../../bus/index.ts';
import { fnRequestUrl, fromFnResponseHeaders, toFnRequestHeaders } from '../../executor/fn-headers.ts';

function invoke(overrides: Partial<InvokeHeader> = {}): InvokeHeader {
  return {
    id: 'call-1',
    fn: { name: 'echo', version: 3 },
    method: 'put',
    path: '/a/b',
    query: 'x=1&y=2',
    headers: {},
    deadlineMs: Date.UTC(2030, 0, 2, 3, 4, 5, 678),
    traceparent: '',
    receivedAtMs: 0,
    ...overrides,
  };
}

describe('Fn http-stream request headers', () => {
  it('carries the call id, an RFC3339 deadline, the method and the request URL', () => {
    expect(toFnRequestHeaders(invoke(), 'echo')).toEqual({
      'fn-call-id': 'call-1',
      'fn-deadline': '2030-01-02T03:04:05.678Z',
      'fn-http-method': 'PUT',
      'fn-http-request-url': '/function/echo/a/b?x=1&y=2',
    });
  });

  it('maps each caller header to Fn-Http-H-<name> and passes Content-Type as is too', () => {
    const headers = toFnRequestHeaders(invoke({ headers: { 'content-type': 'text/csv', 'x-api-key': 'k', accept: 'a, b' } }), 'echo');
    expect(headers).toMatchObject({ 'fn-http-h-content-type': 'text/csv', 'content-type': 'text/csv', 'fn-http-h-x-api-key': 'k', 'fn-http-h-accept': 'a, b' });
  });

  it.each(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-authorization', 'content-length'])('skips the hop-by-hop header %s', (name) => {
    const headers = toFnRequestHeaders(invoke({ headers: { [name]: 'v', 'x-kept': '1' } }), 'echo');
    expect(headers).not.toHaveProperty(`fn-http-h-${name}`);
    expect(headers).toHaveProperty('fn-http-h-x-kept', '1');
  });

  it('skips headers whose name or value could not be sent', () => {
    const headers = toFnRequestHeaders(invoke({ headers: { 'bad name': 'v', 'x-split': 'a\r\nInjected: 1' } }), 'echo');
    expect(Object.keys(headers).filter((k) => k.startsWith('fn-http-h-'))).toEqual([]);
  });

  it('builds the request URL without a ? when the query is empty', () => {
    expect(fnRequestUrl('hello', '/', '')).toBe('/function/hello/');
    expect(fnRequestUrl('hello', '/p', 'q=1')).toBe('/function/hello/p?q=1');
  });
});

describe('Fn http-stream response headers', () => {
  it('takes the status from Fn-Http-Status and the headers from Fn-Http-H-*', () => {
    const head = fromFnResponseHeaders(200, {
      'fn-http-status': '201',
      'fn-http-h-x-made': 'yes',
      'fn-http-h-set-cookie': ['a=1', 'b=2'],
      'content-type': 'application/json',
      'fn-fdk-version': 'skiff-bootstrap/1',
      'content-length': '12',
    });
    expect(head).toEqual({ status: 201, headers: { 'x-made': 'yes', 'set-cookie': 'a=1, b=2', 'content-type': 'application/json' } });
  });

  it('falls back to the HTTP status when there is no Fn-Http-Status', () => {
    expect(fromFnResponseHeaders(503, {}).status).toBe(503);
  });

  it('prefers the function content type over the transport one', () => {
    expect(fromFnResponseHeaders(200, { 'fn-http-h-content-type': 'text/csv', 'content-type': 'application/octet-stream' }).headers).toEqual({ 'content-type': 'text/csv' });
  });

  it.each(['content-length', 'connection', 'date', 'keep-alive', 'transfer-encoding', 'fn-call-id'])('drops %s even when the function sets it', (name) => {
    expect(fromFnResponseHeaders(200, { [`fn-http-h-${name}`]: 'x' }).headers).toEqual({});
  });

  it.each(['abc', '42', '600', '2.5', ''])('rejects the invalid Fn-Http-Status %j as FUNCTION_BAD_RESPONSE', (status) => {
    expect(() => fromFnResponseHeaders(200, { 'fn-http-status': status })).toThrow(expect.objectContaining({ code: 'FUNCTION_BAD_RESPONSE' }));
  });
});
