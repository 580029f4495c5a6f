// Skiff example (style a, ES module): a JSON greeting; GET /function/hello?name=Ada
export default async function hello(request, context) {
  const name = Array.isArray(request.query.name) ? request.query.name[0] : request.query.name;
  return {
    message: `Hello, ${name || 'world'}!`,
    function: context.functionName,
    callId: context.callId,
  };
}
