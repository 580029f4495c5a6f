/**
 * Writes the generated reference tables: docs/errors.md from errors.ts and the option table in
 * docs/configuration.md from config.ts. Run after changing either: `npm run docs`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { DEFAULTS, ENV_OVERRIDES } from '../config.ts';
import { ERROR_CODES } from '../errors.ts';

function errorsDoc(): string {
  let out = '# Error codes\n\n';
  out += 'Every error Skiff answers is JSON `{ "error": { "code": "…", "message": "…" } }` with the status below. ';
  out += 'The same code is stored on the invocation record (`errorCode`). *Blame* says whose fault it is: the **caller** ';
  out += '(fix the request), the **function** (fix its code or limits) or the **platform** (Skiff or the engines under it).\n\n';
  out += '| code | status | blame | meaning |\n| --- | --- | --- | --- |\n';
  for (const [code, spec] of Object.entries(ERROR_CODES)) out += `| \`${code}\` | ${spec.statusCode} | ${spec.blame} | ${spec.description} |\n`;
  return out;
}

function flatten(value: unknown, prefix = ''): Array<[string, unknown]> {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k));
  }
  return [[prefix, value]];
}

const MARK_START = '<!-- options:start -->';
const MARK_END = '<!-- options:end -->';

function optionsTable(): string {
  const envByOption = new Map(Object.entries(ENV_OVERRIDES).map(([env, [option]]) => [option, env]));
  let out = '| option | default | environment |\n| --- | --- | --- |\n';
  for (const [option, value] of flatten(DEFAULTS)) {
    const shown = option === 'dataDir' ? '`./.skiff`' : option === 'executor.nodeId' ? 'host name' : `\`${JSON.stringify(value)}\``;
    out += `| \`${option}\` | ${shown} | ${envByOption.has(option) ? `\`${envByOption.get(option)}\`` : ''} |\n`;
  }
  return out;
}

writeFileSync(new URL('../docs/errors.md', import.meta.url), errorsDoc());
const configDocUrl = new URL('../docs/configuration.md', import.meta.url);
const configDoc = readFileSync(configDocUrl, 'utf8');
const start = configDoc.indexOf(MARK_START);
const end = configDoc.indexOf(MARK_END);
if (start < 0 || end < 0) throw new Error('docs/configuration.md lacks the options markers');
writeFileSync(configDocUrl, `${configDoc.slice(0, start + MARK_START.length)}\n${optionsTable()}${configDoc.slice(end)}`);
