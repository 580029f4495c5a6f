/**
 * `npm run bench:report`: renders every result in bench/results/ (and its sub-folders) into
 * bench/results/REPORT.md with SVG charts under bench/results/charts/<machine>/. Results from
 * different machines stay apart: one section per machine, and within it the newest result of
 * each scenario. Scenarios this file knows get their own charts; any other result file (with a
 * `rows` or `results` array) gets its table and a bar chart per headline metric.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { groupedBars, lineWithRange, metricBars, renderSvg, rowBars, stackedBars, type Datum } from './charts.ts';
import type { MachineInfo } from './machine.ts';
import { RESULTS_DIR } from './results.ts';
import type { Spread } from './stats.ts';

/** The order scenarios appear in; others follow alphabetically. */
const SCENARIO_ORDER = ['warm-invoke', 'cold-start', 'burst', 'many-functions', 'trace-replay', 'keepalive', 'ingest'];
const REPORT_FILE = 'REPORT.md';
const CHARTS_DIR = 'charts';
const MAX_GENERIC_METRICS = 4;

/** What the report reads of any result file; everything else is scenario-specific. */
export interface ResultShape {
  scenario: string;
  date: string;
  machine: MachineInfo;
  commit: string;
  dirty?: boolean;
  settings?: Record<string, unknown>;
  baseline?: string;
  generator?: { maxCpuPercent: number; meanCpuPercent: number };
  notes?: string[];
  table?: { headers: string[]; rows: Array<Array<string | number>> };
  rows?: unknown[];
  results?: unknown[];
  [key: string]: unknown;
}

/** A result with the file it came from. */
export interface LoadedResult extends ResultShape {
  file: string;
}

/** A short, file-name-safe key for a machine: CPU, cores, memory. */
export function machineKey(m: MachineInfo): string {
  const cpu = m.cpuModel.toLowerCase().replace(/\(r\)|\(tm\)|cpu|processor|@.*$/g, '').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  return `${cpu || 'cpu'}-${m.cores}c-${m.memoryGiB}g`;
}

function isResult(value: unknown): value is ResultShape {
  const v = value as Partial<ResultShape> | null;
  return typeof v === 'object' && v !== null && typeof v.scenario === 'string' && typeof v.machine === 'object' && v.machine !== null && typeof v.date === 'string';
}

/** Every result file under `dir` (top level and one level of sub-folders, charts excluded). */
export function loadResults(dir: string): LoadedResult[] {
  const files: string[] = [];
  const walk = (d: string, depth: number) => {
    let names: string[] = [];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const name of names) {
      const full = path.join(d, name);
      if (name === CHARTS_DIR) continue;
      if (statSync(full).isDirectory()) {
        if (depth === 0) walk(full, depth + 1);
      } else if (name.endsWith('.json')) files.push(full);
    }
  };
  walk(dir, 0);
  const out: LoadedResult[] = [];
  for (const file of files) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
      if (isResult(parsed)) out.push({ ...parsed, file });
    } catch {
      // Not a result file: ignored.
    }
  }
  return out;
}

/** Machine key → newest result per scenario, newest machine first. */
export function groupByMachine(results: readonly LoadedResult[]): Array<{ key: string; machine: MachineInfo; results: LoadedResult[] }> {
  const groups = new Map<string, Map<string, LoadedResult>>();
  for (const r of results) {
    const key = machineKey(r.machine);
    const byScenario = groups.get(key) ?? new Map<string, LoadedResult>();
    const current = byScenario.get(r.scenario);
    if (!current || current.date < r.date) byScenario.set(r.scenario, r);
    groups.set(key, byScenario);
  }
  const rank = (s: string) => (SCENARIO_ORDER.includes(s) ? SCENARIO_ORDER.indexOf(s) : SCENARIO_ORDER.length);
  return [...groups.entries()]
    .map(([key, byScenario]) => {
      const list = [...byScenario.values()].sort((a, b) => rank(a.scenario) - rank(b.scenario) || a.scenario.localeCompare(b.scenario));
      return { key, machine: list.reduce((a, b) => (a.date > b.date ? a : b)).machine, results: list };
    })
    .sort((a, b) => Math.max(...b.results.map((r) => Date.parse(r.date))) - Math.max(...a.results.map((r) => Date.parse(r.date))));
}

function isSpread(v: unknown): v is Spread {
  const s = v as Partial<Spread> | null;
  return typeof s === 'object' && s !== null && typeof s.median === 'number' && typeof s.min === 'number' && typeof s.max === 'number';
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (isSpread(v)) return v.min === v.max ? String(v.median) : `${v.median} (${v.min}–${v.max})`;
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function escapeMd(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function markdownTable(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<unknown>>): string {
  return [`| ${headers.map((h) => escapeMd(h)).join(' | ')} |`, `| ${headers.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${headers.map((_, i) => escapeMd(cell(r[i]))).join(' | ')} |`)].join('\n');
}

/** Flattens one row object into dotted primitive fields (spreads kept whole, arrays skipped). */
function flatten(row: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (typeof row !== 'object' || row === null) return out;
  for (const [k, v] of Object.entries(row)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (Array.isArray(v)) continue;
    if (isSpread(v) || typeof v !== 'object' || v === null) out[key] = v;
    else flatten(v, key, out);
  }
  return out;
}

function genericRows(r: LoadedResult): Array<Record<string, unknown>> {
  const list = Array.isArray(r.rows) && r.rows.length > 0 ? r.rows : Array.isArray(r.results) ? r.results : [];
  return list.map((row) => flatten(row));
}

const numeric = (v: unknown) => (isSpread(v) ? v.median : typeof v === 'number' ? v : undefined);
const HEADLINE = /(pct|percent|p50|p99|ms$|us$|gbs|persec|rps|throughput|cold|rows|mb\/s|bytes\/s)/i;

interface Chart {
  name: string;
  alt: string;
  spec: TopLevelSpec;
}

function spreadDatum(s: Spread, scale = 1): { median: number; min: number; max: number } {
  return { median: s.median / scale, min: s.min / scale, max: s.max / scale };
}

function payloadLabel(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

interface WarmRowLike {
  payloadBytes: number;
  connections: number;
  targets: Record<string, { requestsPerSec: Spread; p50Us: Spread; p90Us: Spread; p99Us: Spread; p999Us: Spread }>;
}

function warmInvokeCharts(r: LoadedResult): Chart[] {
  const rows = (r.rows ?? []) as WarmRowLike[];
  if (rows.length === 0 || !rows[0].targets) return [];
  const throughput: Datum[] = [];
  const percentiles: Datum[] = [];
  const p99: Datum[] = [];
  for (const row of rows) {
    for (const [target, t] of Object.entries(row.targets)) {
      const facet = `payload ${payloadLabel(row.payloadBytes)}`;
      // Facets (payload columns, connection rows) sort by this: payload first, then connections.
      const order = row.payloadBytes * 1e4 + row.connections;
      throughput.push({ x: row.connections, series: target, facet, order, ...spreadDatum(t.requestsPerSec) });
      p99.push({ x: row.connections, series: target, facet, order, ...spreadDatum(t.p99Us, 1000) });
      for (const [name, s] of [['p50', t.p50Us], ['p90', t.p90Us], ['p99', t.p99Us], ['p99.9', t.p999Us]] as const) {
        percentiles.push({ group: name, series: target, facet, row: `${row.connections} conns`, order: row.connections * 1e8 + row.payloadBytes, ...spreadDatum(s, 1000) });
      }
    }
  }
  return [
    { name: 'throughput', alt: 'warm-invoke throughput vs concurrency', spec: lineWithRange('Throughput vs concurrency (median, bar = min–max)', throughput, { x: 'connections', y: 'requests/s', series: 'target', facet: 'payload' }) },
    { name: 'p99', alt: 'warm-invoke p99 latency vs concurrency', spec: lineWithRange('p99 latency vs concurrency (ms, log)', p99, { x: 'connections', y: 'p99 ms', series: 'target', facet: 'payload', logY: true }) },
    { name: 'latency', alt: 'warm-invoke latency percentiles', spec: groupedBars('Latency percentiles (ms, log; median of runs, whisker = min–max)', percentiles, { group: 'percentile', y: 'ms', series: 'target', facet: true, row: true, logY: true }) },
  ];
}

function spreadRowCharts(r: LoadedResult, label: string, metrics: Array<[field: string, title: string, scale: number]>): Chart[] {
  const rows = (r.rows ?? []) as Array<Record<string, unknown>>;
  if (rows.length === 0) return [];
  const data: Datum[] = [];
  for (const row of rows) {
    for (const [order, [field, title, scale]] of metrics.entries()) {
      const v = row[field];
      if (isSpread(v) && Number.isFinite(v.median)) data.push({ label: String(row[label]), facet: title, order, ...spreadDatum(v, scale) });
    }
  }
  return [{ name: 'metrics', alt: `${r.scenario} figures`, spec: rowBars(`${r.scenario}: median of runs, whisker = min–max`, data) }];
}

/** The burst's start breakdown: per start kind (cold, stemcell, warm), median queue + init + run. */
function startBreakdownChart(r: LoadedResult): Chart[] {
  const rows = (r.rows ?? []) as Array<{ phase?: string; phases?: Record<string, Record<string, Spread | number>> }>;
  // The row with the most start kinds (the warm burst's breakdown covers both bursts' calls).
  const source = rows.map((row) => row.phases ?? {}).reduce<Record<string, Record<string, Spread | number>>>((a, b) => (Object.keys(b).length > Object.keys(a).length ? b : a), {});
  if (Object.keys(source).length === 0) return [];
  const data: Datum[] = [];
  for (const [kind, p] of Object.entries(source)) {
    for (const [order, part] of (['queueUs', 'initUs', 'runUs'] as const).entries()) {
      const v = p[part];
      if (isSpread(v)) data.push({ bar: `${kind} (${String(p.calls)})`, part: part.replace('Us', ''), value: v.median / 1000, order });
    }
  }
  return [{ name: 'start-breakdown', alt: 'start breakdown by start kind', spec: stackedBars('Where a call\'s time goes, by start kind (median ms; calls in brackets)', data, { bar: 'start', y: 'ms', part: 'phase' }) }];
}

/** Vega-Lite reads dots and brackets in a field name as nesting: flattened names use spaces instead. */
function fieldName(dotted: string): string {
  const name = dotted.replace(/[.[\]]/g, ' ').trim();
  return isMicroseconds(dotted) ? `${name.replace(/Us\b/, '')} (ms)` : name;
}

/** `initUs`, `e2eUs.p50`: microsecond fields, charted in ms. */
function isMicroseconds(name: string): boolean {
  return /Us(\b|\.|$)/.test(name);
}

function genericCharts(r: LoadedResult): Chart[] {
  const rows = genericRows(r);
  if (rows.length === 0) return [];
  const keys = Object.keys(rows[0]);
  const varies = (k: string) => new Set(rows.map((row) => String(row[k]))).size > 1;
  // The row's name: its string fields that tell rows apart, plus mixed fields ('none' or a number).
  const labelKeys = keys.filter((k) => rows.some((row) => typeof row[k] === 'string') && varies(k)).slice(0, 3);
  const metrics = keys
    .filter((k) => HEADLINE.test(k) && rows.every((row) => numeric(row[k]) !== undefined))
    .filter((k) => new Set(rows.map((row) => numeric(row[k]))).size > 1)
    .slice(0, MAX_GENERIC_METRICS);
  if (metrics.length === 0) return [];
  const data: Datum[] = rows.map((row, i) => {
    const d: Datum = { label: labelKeys.length > 0 ? labelKeys.map((k) => (typeof row[k] === 'string' ? String(row[k]) : `${k}=${String(row[k])}`)).join(', ') : `row ${i + 1}` };
    for (const m of metrics) {
      const value = numeric(row[m]);
      d[fieldName(m)] = value === undefined ? null : isMicroseconds(m) ? value / 1000 : value;
    }
    return d;
  });
  return [{ name: 'metrics', alt: `${r.scenario} headline figures`, spec: metricBars(`${r.scenario}: headline figures`, data, 'label', metrics.map(fieldName)) }];
}

function chartsFor(r: LoadedResult): Chart[] {
  switch (r.scenario) {
    case 'warm-invoke':
      return warmInvokeCharts(r);
    case 'burst':
      return [...spreadRowCharts(r, 'phase', [['firstResponseMs', 'first response ms', 1], ['lastResponseMs', 'last response ms', 1], ['p99Us', 'p99 ms', 1000], ['coldStarts', 'cold+stemcell starts', 1]]), ...startBreakdownChart(r)];
    case 'many-functions':
      return spreadRowCharts(r, 'target', [['requestsPerSec', 'requests/s', 1], ['p99Us', 'p99 ms', 1000], ['coldPercent', 'not warm %', 1]]);
    case 'trace-replay':
      return spreadRowCharts(r, 'policy', [['coldPercent', 'not warm %', 1], ['traceGbSeconds', 'GB·s (trace time)', 1], ['p99Us', 'p99 ms', 1000]]);
    default:
      return genericCharts(r);
  }
}

function tableFor(r: LoadedResult): string {
  if (r.table && Array.isArray(r.table.headers) && Array.isArray(r.table.rows)) return markdownTable(r.table.headers, r.table.rows);
  const rows = genericRows(r);
  if (rows.length === 0) return '_No rows in this result._';
  const headers = [...new Set(rows.flatMap((row) => Object.keys(row)))];
  return markdownTable(headers, rows.map((row) => headers.map((h) => row[h])));
}

function describeMachineLine(m: MachineInfo): string {
  return `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}, Docker ${m.docker}`;
}

/** Renders REPORT.md and its charts from the results in `dir`; returns the report's path. */
export async function renderReport(dir: string = RESULTS_DIR): Promise<string> {
  const groups = groupByMachine(loadResults(dir));
  const chartsRoot = path.join(dir, CHARTS_DIR);
  rmSync(chartsRoot, { recursive: true, force: true });
  const out: string[] = [
    '# Skiff benchmark report',
    '',
    `Generated ${new Date().toISOString()} by \`npm run bench:report\` from \`${path.basename(dir)}/*.json\`. Each machine has its own section; within it, the newest result of each scenario. Unless a table says otherwise, cells are the **median of the runs with (min–max)**; the load generator (autocannon/undici) ran in its own process and its own CPU use is given per scenario.`,
    '',
  ];
  if (groups.length === 0) out.push('_No results yet: run `npm run bench`._');
  if (groups.length > 1) out.push('Machines:', '', ...groups.map((g) => `- [${g.key}](#${g.key}): ${describeMachineLine(g.machine)}`), '');
  for (const group of groups) {
    out.push(`## ${group.key}`, '', `**Machine:** ${describeMachineLine(group.machine)}`, '');
    const missing = SCENARIO_ORDER.filter((s) => !group.results.some((r) => r.scenario === s));
    if (missing.length > 0) out.push(`Scenarios with no result on this machine: ${missing.join(', ')}.`, '');
    for (const r of group.results) {
      out.push(`### ${r.scenario}`, '');
      out.push(`Run ${r.date} at commit \`${r.commit.slice(0, 12)}\`${r.dirty ? ' (with uncommitted changes)' : ''}; file \`${path.relative(dir, r.file)}\`.`, '');
      if (r.baseline) out.push(`**Baseline:** ${r.baseline}`, '');
      out.push(r.generator ? `**Load generator CPU** (its own process): max ${r.generator.maxCpuPercent}% of one core, mean ${r.generator.meanCpuPercent}%.` : '**Load generator CPU:** not recorded by this scenario.', '');
      for (const note of r.notes ?? []) out.push(`> **Note:** ${note}`, '');
      if (r.settings && Object.keys(r.settings).length > 0) out.push(`Settings: \`${JSON.stringify(r.settings)}\``, '');
      out.push(tableFor(r), '');
      for (const chart of chartsFor(r)) {
        try {
          const svg = await renderSvg(chart.spec);
          const rel = path.join(CHARTS_DIR, group.key, `${r.scenario}-${chart.name}.svg`);
          mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
          writeFileSync(path.join(dir, rel), svg);
          out.push(`![${chart.alt}](${rel.split(path.sep).join('/')})`, '');
        } catch (err) {
          out.push(`_Chart ${chart.name} could not be rendered: ${(err as Error).message}_`, '');
        }
      }
    }
  }
  const file = path.join(dir, REPORT_FILE);
  writeFileSync(file, `${out.join('\n').trimEnd()}\n`);
  return file;
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname);
if (invokedDirectly) {
  renderReport().then(
    (file) => process.stdout.write(`bench:report: wrote ${file}\n`),
    (err: unknown) => {
      process.stderr.write(`bench:report: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
