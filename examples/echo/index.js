// Skiff example (style a): echoes the request body back byte for byte, with the request's
// content type, and reports what it saw in x-echo-* response headers.
module.exports = async function echo(request, context) {
  console.log(`echo ${request.body.length} bytes`);
  return {
    status: 200,
    headers: {
      'content-type': request.headers['content-type'] || 'application/octet-stream',
      'x-echo-method': request.method,
      'x-echo-path': request.path,
      'x-echo-query': request.rawQuery,
    },
    body: request.body,
  };
};
