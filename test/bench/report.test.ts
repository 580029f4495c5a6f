/**
 * bench:report renders results into REPORT.md with SVG charts, one section per machine.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { MachineInfo } from '../../bench/machine.ts';
import { groupByMachine, loadResults, machineKey, renderReport } from '../../bench/report.ts';

const MACHINE_A: MachineInfo = { cpuModel: 'AMD EPYC 7B13', cores: 2, memoryGiB: 8, os: 'Linux', node: 'v20', docker: '24' };
const MACHINE_B: MachineInfo = { ...MACHINE_A, cpuModel: 'Intel(R) Xeon(R) CPU @ 2.20GHz', cores: 4 };
const s = (median: number, min = median, max = median) => ({ median, min, max });

function warmResult(machine: MachineInfo, date: string): Record<string, unknown> {
  const target = (rps: number) => ({ requestsPerSec: s(rps, rps - 10, rps + 10), p50Us: s(500, 400, 600), p90Us: s(800), p99Us: s(1500, 1200, 2000), p999Us: s(3000), errors: 0, non2xx: 0, runs: [] });
  return {
    scenario: 'warm-invoke',
    date,
    machine,
    commit: 'abcdef1234567890',
    dirty: false,
    settings: { runs: 3 },
    baseline: 'direct and proxy',
    generator: { maxCpuPercent: 61.5, meanCpuPercent: 40 },
    notes: [],
    table: { headers: ['conns', 'req/s'], rows: [[1, '1000 (990–1010)']] },
    rows: [1, 16].map((connections) => ({ payloadBytes: 100, connections, targets: { direct: target(3000), proxy: target(1500), full: target(1000) } })),
  };
}

function tempResults(files: Record<string, unknown>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'skiff-report-'));
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), JSON.stringify(content));
  return dir;
}

describe('bench:report', () => {
  it('names machines by CPU, cores and memory', () => {
    expect(machineKey(MACHINE_A)).toBe('amd-epyc-7b13-2c-8g');
    expect(machineKey(MACHINE_B)).toBe('intel-xeon-4c-8g');
  });

  it('keeps results from different machines apart and takes the newest result of a scenario', () => {
    const dir = tempResults({
      'warm-invoke.json': warmResult(MACHINE_A, '2026-01-02T00:00:00Z'),
      'old-warm.json': warmResult(MACHINE_A, '2026-01-01T00:00:00Z'),
      'other.json': warmResult(MACHINE_B, '2026-01-03T00:00:00Z'),
      'not-a-result.json': { hello: 'world' },
    });
    const groups = groupByMachine(loadResults(dir));
    expect(groups.map((g) => g.key)).toEqual(['intel-xeon-4c-8g', 'amd-epyc-7b13-2c-8g']);
    expect(groups[1].results.map((r) => r.date)).toEqual(['2026-01-02T00:00:00Z']);
  });

  it('writes REPORT.md with the table, the baseline, the load generator CPU and SVG charts', async () => {
    const dir = tempResults({
      'warm-invoke.json': warmResult(MACHINE_A, '2026-01-02T00:00:00Z'),
      'keepalive.json': { scenario: 'keepalive', date: '2026-01-02T00:00:00Z', machine: MACHINE_A, commit: 'x', results: [{ policy: 'fixed', coldStartPct: 2.5, wastedGbS: 10 }, { policy: 'adaptive', coldStartPct: 1.4, wastedGbS: 6 }] },
    });
    const file = await renderReport(dir);
    const report = readFileSync(file, 'utf8');
    expect(report).toContain('## amd-epyc-7b13-2c-8g');
    expect(report).toContain('| conns | req/s |');
    expect(report).toContain('**Baseline:** direct and proxy');
    expect(report).toContain('max 61.5% of one core');
    expect(report).toContain('| policy | coldStartPct | wastedGbS |');
    const charts = [...report.matchAll(/!\[[^\]]*\]\(([^)]+\.svg)\)/g)].map((m) => m[1]);
    expect(charts).toEqual(expect.arrayContaining(['charts/amd-epyc-7b13-2c-8g/warm-invoke-throughput.svg', 'charts/amd-epyc-7b13-2c-8g/keepalive-metrics.svg']));
    for (const chart of charts) {
      const svg = readFileSync(path.join(dir, chart), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      expect(svg).toContain('<path');
    }
    expect(readFileSync(path.join(dir, 'charts/amd-epyc-7b13-2c-8g/warm-invoke-throughput.svg'), 'utf8')).toContain('requests/s');
  });
});
