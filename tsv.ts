/**
 * TabSeparated text, as ClickHouse reads and writes it: the one escaping rule for every String
 * field Skiff writes (the executor's log rows in bus/log-rows.ts, storage's batch encoder). A
 * module of its own with no imports and no side effects, so a worker thread may load it without
 * loading a component (bus/index.ts would load ZeroMQ's native addon).
 */

const TSV_SPECIAL = /[\t\n\r\\]/;
const TSV_SPECIAL_ALL = /[\t\n\r\\]/g;
const TSV_ESCAPES: Readonly<Record<string, string>> = { '\t': '\\t', '\n': '\\n', '\r': '\\r', '\\': '\\\\' };
const TSV_ESCAPED = /\\(.)/g;
/** Every escape ClickHouse may write back, not only the four tsvField writes. */
const TSV_UNESCAPES: Readonly<Record<string, string>> = { t: '\t', n: '\n', r: '\r', '\\': '\\', '0': '\0', b: '\b', f: '\f', "'": "'" };

/** A text value as a TabSeparated field: a tab, newline, carriage return or backslash is escaped. */
export function tsvField(value: string): string {
  return TSV_SPECIAL.test(value) ? value.replace(TSV_SPECIAL_ALL, (c) => TSV_ESCAPES[c]) : value;
}

/** A TabSeparated field back to its text. */
export function tsvUnescape(field: string): string {
  return field.includes('\\') ? field.replace(TSV_ESCAPED, (_, c: string) => TSV_UNESCAPES[c] ?? c) : field;
}
