// Skiff example (style b): an unchanged Fn function using the real @fnproject/fdk (vendored in
// node_modules). The fdk opens FN_LISTENER itself; Skiff's bootstrap only imports this file.
// It echoes the body byte for byte with the caller's content type and x-echo-* headers.
const fdk = require('@fnproject/fdk');

fdk.handle(function (input, ctx) {
  const http = ctx.httpGateway;
  const url = http.requestURL || '';
  const q = url.indexOf('?');
  const pathname = q === -1 ? url : url.slice(0, q);
  const rest = /^\/(?:async-)?function\/[^/]+(\/.*)?$/.exec(pathname);
  console.log(`fdk-echo ${input.length} bytes`);
  http.statusCode = 200;
  // Content-Type goes through ctx.responseContentType; others become Fn-Http-H-* headers.
  http.setResponseHeader('Content-Type', http.getHeader('Content-Type') || ctx.contentType || 'application/octet-stream');
  http.setResponseHeader('X-Echo-Method', http.method || 'POST');
  http.setResponseHeader('X-Echo-Path', rest ? rest[1] || '/' : pathname || '/');
  http.setResponseHeader('X-Echo-Query', q === -1 ? '' : url.slice(q + 1));
  // rawResult: written as-is (a JSON content type would otherwise be JSON.stringify'd).
  return fdk.rawResult(input);
}, { inputMode: 'buffer' });
