// Module resolution hook of the k6 adapter: the k6 modules a script imports resolve to the shims.
const SHIMS = { k6: 'k6.ts', 'k6/http': 'k6-http.ts', 'k6/metrics': 'k6-metrics.ts' };

export async function resolve(specifier, context, next) {
  const shim = SHIMS[specifier];
  // Handed on (not short-circuited) so tsx resolves it and loads the TypeScript.
  if (shim) return next(new URL(`./shim/${shim}`, import.meta.url).href, context);
  return next(specifier, context);
}
