// Async fixture: always answers 500 (a retryable outcome), after printing `fail <callId>`.
export default async function alwaysFail(request, context) {
  console.log(`fail ${context.callId}`);
  return { status: 500, headers: { 'content-type': 'text/plain' }, body: 'always fails' };
}
