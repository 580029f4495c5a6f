/**
 * Checks k6 threshold definitions the way k6 parses them: `metric{tag:value,...}` keys naming a
 * built-in metric or one the script declares, and expressions `<aggregation> <op> <number>`.
 */

/** Metrics k6 itself emits. */
export const BUILTIN_METRICS = new Set([
  'checks', 'data_received', 'data_sent', 'dropped_iterations', 'group_duration', 'http_req_blocked', 'http_req_connecting',
  'http_req_duration', 'http_req_failed', 'http_req_receiving', 'http_req_sending', 'http_req_tls_handshaking', 'http_req_waiting',
  'http_reqs', 'iteration_duration', 'iterations', 'vus', 'vus_max',
]);

const KEY = /^([A-Za-z_][A-Za-z0-9_]*)(\{([^{}]+)\})?$/;
const TAG = /^\s*[A-Za-z_][A-Za-z0-9_]*\s*:\s*[^,]+$/;
const EXPRESSION = /^(avg|min|max|med|count|rate|value|p\(\d+(\.\d+)?\))\s*(<|<=|>|>=|==|===|!=)\s*-?\d+(\.\d+)?$/;
/** Which aggregations each metric type has. */
const AGGREGATIONS: Record<string, RegExp> = {
  trend: /^(avg|min|max|med|p\()/,
  rate: /^rate/,
  counter: /^(count|rate)/,
  gauge: /^value/,
};
const BUILTIN_TYPES: Record<string, string> = { checks: 'rate', http_req_failed: 'rate', http_reqs: 'counter', iterations: 'counter', dropped_iterations: 'counter', data_received: 'counter', data_sent: 'counter', vus: 'gauge', vus_max: 'gauge' };

/** Problems with `thresholds` (empty when k6 would accept them); `custom` maps declared metrics to types. */
export function thresholdProblems(thresholds: Record<string, unknown>, custom: Record<string, string>): string[] {
  const problems: string[] = [];
  for (const [key, list] of Object.entries(thresholds)) {
    const match = KEY.exec(key);
    if (!match) {
      problems.push(`${key}: not a metric name with optional {tag:value} selectors`);
      continue;
    }
    const metric = match[1];
    const type = BUILTIN_TYPES[metric] ?? (BUILTIN_METRICS.has(metric) ? 'trend' : custom[metric]);
    if (!type) problems.push(`${key}: ${metric} is neither a k6 metric nor one the script declares`);
    if (match[3] && !match[3].split(',').every((t) => TAG.test(t))) problems.push(`${key}: bad tag selector`);
    const expressions = (Array.isArray(list) ? list : [list]).map((e) => (typeof e === 'object' && e !== null ? (e as { threshold?: unknown }).threshold : e));
    for (const expression of expressions) {
      if (typeof expression !== 'string' || !EXPRESSION.test(expression.trim())) problems.push(`${key}: "${String(expression)}" is not <aggregation> <op> <number>`);
      else if (type && !AGGREGATIONS[type]?.test(expression.trim())) problems.push(`${key}: "${expression}" does not fit a ${type} metric`);
    }
  }
  return problems;
}
