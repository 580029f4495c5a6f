/**
 * Placement benchmark (`npm run bench:placement`): the real gateway/placement.ts policies driven by
 * a discrete-event simulator of N executor nodes and F functions with Zipf popularity, seeded.
 *
 * Each node holds at most `containers` containers (one call at a time each, as with concurrency 1);
 * an idle one is reused by its function (warm), removed after the keep-alive TTL, or evicted (least
 * recently idle first) to make room for a cold start. A node's credit is its free containers, its
 * load the calls it runs. Calls arrive as a Poisson stream sized to a target utilisation; a cold
 * start holds its container `coldStartMs` longer. The same call sequence goes to every policy.
 * Measured after a warm-up share of the calls: warm-hit rate, cold starts, evictions, load
 * imbalance (max/mean calls in flight across nodes, sampled), and the policy's own CPU per decision.
 *
 * Knobs: BENCH_PLACEMENT_NODES (10,100,1000), _FUNCTIONS (10000), _REQUESTS (200000 per run),
 * _ZIPF_S (1), _CONTAINERS (16 per node), _KEEPALIVE_MS (60000), _RUN_MS (100, mean),
 * _COLD_MS (250), _UTILISATION (0.2), _ZONES (1), _EPSILON (0.25), _SEED (42).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { renderTable } from '../cli/table.ts';
import { choosePlacement, leastLoaded, PlacementState, random, type PlacementCandidate, type PlacementOptions, type PlacementPolicy, type PlacementReason } from '../gateway/placement.ts';
import { renderSvg } from './charts.ts';
import { knobInt, knobList } from './knobs.ts';
import { RESULTS_DIR, writeResult } from './results.ts';
import { SeededRandom } from './trace/random.ts';

const SCENARIO = 'placement';
const settings = {
  nodes: knobList('BENCH_PLACEMENT_NODES', [10, 100, 1000]),
  functions: knobInt('BENCH_PLACEMENT_FUNCTIONS', 10_000),
  requests: knobInt('BENCH_PLACEMENT_REQUESTS', 200_000),
  /** Share of the calls (from the start) not measured, while caches fill. */
  warmupShare: 0.2,
  zipfExponent: knobInt('BENCH_PLACEMENT_ZIPF_S', 1),
  containersPerNode: knobInt('BENCH_PLACEMENT_CONTAINERS', 16),
  keepAliveMs: knobInt('BENCH_PLACEMENT_KEEPALIVE_MS', 60_000),
  meanRunMs: knobInt('BENCH_PLACEMENT_RUN_MS', 100),
  coldStartMs: knobInt('BENCH_PLACEMENT_COLD_MS', 250),
  /** Offered load as a share of all containers, counting warm run time only. */
  utilisation: knobInt('BENCH_PLACEMENT_UTILISATION', 0.2),
  zones: knobInt('BENCH_PLACEMENT_ZONES', 1),
  loadEpsilon: knobInt('BENCH_PLACEMENT_EPSILON', 0.25),
  /** Calls between two samples of the load imbalance. */
  sampleEvery: 500,
  seed: knobInt('BENCH_PLACEMENT_SEED', 42),
};

const POLICIES: ReadonlyArray<readonly [string, PlacementPolicy, PlacementOptions?]> = [
  ['affinity + bounded load', choosePlacement],
  ['affinity, warm bounded too', choosePlacement, { boundWarm: true }],
  ['random', random],
  ['least loaded', leastLoaded],
];

/** mulberry32: a small seeded uniform [0, 1) source. */
function seeded(seed: number): () => number {
  const random = new SeededRandom(seed);
  return () => random.next();
}

/** A binary min-heap of (time, value). */
class TimeHeap<T> {
  readonly #times: number[] = [];
  readonly #values: T[] = [];

  get size(): number {
    return this.#times.length;
  }

  peekTime(): number {
    return this.#times.length > 0 ? this.#times[0] : Number.POSITIVE_INFINITY;
  }

  push(time: number, value: T): void {
    const times = this.#times;
    const values = this.#values;
    let i = times.length;
    times.push(time);
    values.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (times[parent] <= time) break;
      times[i] = times[parent];
      values[i] = values[parent];
      i = parent;
    }
    times[i] = time;
    values[i] = value;
  }

  pop(): T {
    const times = this.#times;
    const values = this.#values;
    const top = values[0];
    const lastTime = times.pop() as number;
    const lastValue = values.pop() as T;
    const n = times.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && times[child + 1] < times[child]) child++;
        if (times[child] >= lastTime) break;
        times[i] = times[child];
        values[i] = values[child];
        i = child;
      }
      times[i] = lastTime;
      values[i] = lastValue;
    }
    return top;
  }
}

interface IdleContainer {
  readonly id: number;
  readonly fn: string;
  readonly idleSinceMs: number;
}

/** One simulated executor node; it is its own placement candidate. */
interface SimNode extends PlacementCandidate {
  credits: number;
  inFlight: number;
  /** Idle containers per function, most recently idle last; a function is warm while it has a key. */
  readonly warmFunctions: Map<string, IdleContainer[]>;
  /** Every idle container in the order it became idle (eviction and TTL take the oldest). */
  readonly idle: Map<number, IdleContainer>;
  containers: number;
  served: number;
}

interface Workload {
  /** Function index per call, inter-arrival gap and run time, identical for every policy. */
  readonly fn: Uint32Array;
  readonly gapMs: Float64Array;
  readonly runMs: Float64Array;
  readonly zone: Uint16Array;
}

function makeWorkload(nodes: number): Workload {
  const rng = seeded(settings.seed);
  const { functions, requests, zipfExponent, meanRunMs, containersPerNode, utilisation, zones } = settings;
  const cdf = new Float64Array(functions);
  let sum = 0;
  for (let k = 0; k < functions; k++) cdf[k] = sum += 1 / (k + 1) ** zipfExponent;
  for (let k = 0; k < functions; k++) cdf[k] /= sum;
  const ratePerMs = (utilisation * nodes * containersPerNode) / meanRunMs;
  const workload: Workload = { fn: new Uint32Array(requests), gapMs: new Float64Array(requests), runMs: new Float64Array(requests), zone: new Uint16Array(requests) };
  for (let i = 0; i < requests; i++) {
    const u = rng();
    let lo = 0;
    let hi = functions - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    workload.fn[i] = lo;
    workload.gapMs[i] = -Math.log(1 - rng()) / ratePerMs;
    workload.runMs[i] = -Math.log(1 - rng()) * meanRunMs;
    workload.zone[i] = Math.floor(rng() * zones);
  }
  return workload;
}

interface Row {
  nodes: number;
  policy: string;
  measured: number;
  warmHitPercent: number;
  coldStarts: number;
  coldStartsPer1k: number;
  evictions: number;
  /** Mean over samples of max/mean calls in flight across nodes. */
  loadImbalance: number;
  /** Calls served by the busiest node over the mean, in the measured window. */
  servedImbalance: number;
  rejected: number;
  crossZonePercent: number;
  decisionUs: number;
  reasons: Partial<Record<PlacementReason, number>>;
}

function simulate(nodeCount: number, policyName: string, policy: PlacementPolicy, extra: PlacementOptions, workload: Workload, names: readonly string[]): Row {
  const { containersPerNode, keepAliveMs, coldStartMs, requests, zones, loadEpsilon, sampleEvery } = settings;
  const nodes: SimNode[] = Array.from({ length: nodeCount }, (_, i) => ({
    peerId: `node-${i}/1/0000`,
    nodeId: `node-${i}`,
    zone: zones > 1 ? `z${i % zones}` : undefined,
    credits: containersPerNode,
    inFlight: 0,
    warmFunctions: new Map(),
    idle: new Map(),
    containers: 0,
    served: 0,
  }));
  const state = new PlacementState();
  const rng = seeded(settings.seed + 1);
  const finishing = new TimeHeap<{ node: SimNode; id: number; fn: string }>();
  const expiring = new TimeHeap<{ node: SimNode; container: IdleContainer }>();
  const warmupEnd = Math.floor(requests * settings.warmupShare);
  const reasons: Partial<Record<PlacementReason, number>> = {};
  let nextId = 0;
  let nowMs = 0;
  let warm = 0;
  let cold = 0;
  let evictions = 0;
  let rejected = 0;
  let crossZone = 0;
  let decisionMs = 0;
  let imbalanceSum = 0;
  let imbalanceSamples = 0;

  // The gateway-side index a real initiator would keep from executors' reports: function → nodeIds warm for it.
  const warmIndex = new Map<string, Set<string>>();
  const noneWarm: ReadonlySet<string> = new Set();
  const removeIdle = (node: SimNode, container: IdleContainer) => {
    node.idle.delete(container.id);
    const stack = node.warmFunctions.get(container.fn) as IdleContainer[];
    stack.splice(stack.indexOf(container), 1);
    if (stack.length > 0) return;
    node.warmFunctions.delete(container.fn);
    const warmNodes = warmIndex.get(container.fn) as Set<string>;
    warmNodes.delete(node.nodeId);
    if (warmNodes.size === 0) warmIndex.delete(container.fn);
  };
  const addIdle = (node: SimNode, container: IdleContainer) => {
    node.idle.set(container.id, container);
    const stack = node.warmFunctions.get(container.fn);
    if (stack) {
      stack.push(container);
      return;
    }
    node.warmFunctions.set(container.fn, [container]);
    const warmNodes = warmIndex.get(container.fn);
    if (warmNodes) warmNodes.add(node.nodeId);
    else warmIndex.set(container.fn, new Set([node.nodeId]));
  };
  const advanceTo = (timeMs: number) => {
    for (;;) {
      const finishAt = finishing.peekTime();
      const expireAt = expiring.peekTime();
      if (Math.min(finishAt, expireAt) > timeMs) return;
      if (finishAt <= expireAt) {
        const { node, id, fn } = finishing.pop();
        const container: IdleContainer = { id, fn, idleSinceMs: finishAt };
        node.inFlight--;
        node.credits++;
        addIdle(node, container);
        expiring.push(finishAt + keepAliveMs, { node, container });
      } else {
        const { node, container } = expiring.pop();
        if (node.idle.get(container.id) !== container) continue; // Reused or evicted since.
        removeIdle(node, container);
        node.containers--;
      }
    }
  };

  // One options object for the run, updated per call: building one per call would be timed too.
  const options: { -readonly [K in keyof PlacementOptions]: PlacementOptions[K] } = { ...extra, loadEpsilon, random: rng, callerZone: undefined, warmNodeIds: noneWarm };
  for (let i = 0; i < requests; i++) {
    nowMs += workload.gapMs[i];
    advanceTo(nowMs);
    const fn = names[workload.fn[i]];
    const callerZone = zones > 1 ? `z${workload.zone[i]}` : undefined;
    const started = performance.now();
    options.callerZone = callerZone;
    options.warmNodeIds = warmIndex.get(fn) ?? noneWarm;
    const placed = policy(fn, nodes, state, options);
    decisionMs += performance.now() - started;
    const measuring = i >= warmupEnd;
    if (!placed) {
      if (measuring) rejected++;
      continue;
    }
    const node = placed.candidate;
    let runMs = workload.runMs[i];
    let id: number;
    const stack = node.warmFunctions.get(fn);
    if (stack) {
      const container = stack[stack.length - 1];
      removeIdle(node, container);
      id = container.id;
      if (measuring) warm++;
    } else {
      if (node.containers >= containersPerNode) {
        const [oldest] = node.idle.values(); // There is one: a node with credit has a container not busy.
        removeIdle(node, oldest);
        node.containers--;
        if (measuring) evictions++;
      }
      node.containers++;
      id = nextId++;
      runMs += coldStartMs;
      if (measuring) cold++;
    }
    node.inFlight++;
    node.credits--;
    finishing.push(nowMs + runMs, { node, id, fn });
    if (!measuring) continue;
    node.served++;
    reasons[placed.reason] = (reasons[placed.reason] ?? 0) + 1;
    if (callerZone !== undefined && node.zone !== callerZone) crossZone++;
    if ((i - warmupEnd) % sampleEvery === 0) {
      let max = 0;
      let total = 0;
      for (const n of nodes) {
        total += n.inFlight;
        if (n.inFlight > max) max = n.inFlight;
      }
      if (total > 0) {
        imbalanceSum += max / (total / nodeCount);
        imbalanceSamples++;
      }
    }
  }

  const measured = requests - warmupEnd;
  const served = warm + cold;
  const meanServed = served / nodeCount;
  const maxServed = Math.max(...nodes.map((n) => n.served));
  return {
    nodes: nodeCount,
    policy: policyName,
    measured,
    warmHitPercent: round((100 * warm) / Math.max(1, served), 1),
    coldStarts: cold,
    coldStartsPer1k: round((1000 * cold) / Math.max(1, served), 1),
    evictions,
    loadImbalance: round(imbalanceSum / Math.max(1, imbalanceSamples), 2),
    servedImbalance: round(maxServed / Math.max(1e-9, meanServed), 2),
    rejected,
    crossZonePercent: round((100 * crossZone) / Math.max(1, served), 1),
    decisionUs: round((1000 * decisionMs) / requests, 2),
    reasons,
  };
}

function round(value: number, digits: number): number {
  return Number(value.toFixed(digits));
}

async function main(): Promise<void> {
  const names = Array.from({ length: settings.functions }, (_, k) => `fn-${k}`);
  const rows: Row[] = [];
  const started = Date.now();
  for (const nodeCount of settings.nodes) {
    const workload = makeWorkload(nodeCount);
    for (const [name, policy, extra] of POLICIES) {
      const row = simulate(nodeCount, name, policy, extra ?? {}, workload, names);
      rows.push(row);
      process.stdout.write(`${SCENARIO}: ${nodeCount} nodes, ${name}: ${row.warmHitPercent}% warm (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
    }
  }

  const headers = ['nodes', 'policy', 'warm hit %', 'cold starts', 'cold /1k', 'evictions', 'load max/mean', 'served max/mean', 'rejected', ...(settings.zones > 1 ? ['cross-zone %'] : []), 'µs/decision'];
  const tableRows = rows.map((r) => [r.nodes, r.policy, r.warmHitPercent, r.coldStarts, r.coldStartsPer1k, r.evictions, r.loadImbalance, r.servedImbalance, r.rejected, ...(settings.zones > 1 ? [r.crossZonePercent] : []), r.decisionUs]);
  process.stdout.write(`\n${renderTable(headers, tableRows)}\n\n`);

  const notes = [
    `Simulated: ${settings.functions} functions with Zipf(${settings.zipfExponent}) popularity, ${settings.requests} calls per run (the first ${settings.warmupShare * 100}% not measured), the same seeded call sequence for every policy.`,
    `Each node: ${settings.containersPerNode} containers of concurrency 1, keep-alive ${settings.keepAliveMs} ms, least recently idle evicted first; a cold start holds its container ${settings.coldStartMs} ms longer.`,
    `Offered load: ${settings.utilisation * 100}% of all containers at warm run times (mean ${settings.meanRunMs} ms, exponential); cold starts add to it, so a policy with many cold starts runs hotter.`,
    'load max/mean: calls in flight on the busiest node over the mean, sampled every 500 calls and averaged; served max/mean: calls served by the busiest node over the mean.',
    'µs/decision: wall time of the policy call alone (the real gateway/placement.ts code), on this machine, while the simulator runs around it.',
  ];
  const file = writeResult<Row>({
    scenario: SCENARIO,
    settings,
    baseline: 'random and least-loaded placement over the same calls',
    notes,
    table: { headers, rows: tableRows },
    rows,
  });

  const chartData = rows.flatMap((r) => [
    { nodes: r.nodes, policy: r.policy, metric: 'warm hit %', value: r.warmHitPercent },
    { nodes: r.nodes, policy: r.policy, metric: 'cold starts per 1k calls', value: r.coldStartsPer1k },
    { nodes: r.nodes, policy: r.policy, metric: 'load imbalance (max/mean in flight)', value: r.loadImbalance },
  ]);
  const svg = await renderSvg({
    title: `Placement: ${settings.functions} functions (Zipf ${settings.zipfExponent}), ${settings.containersPerNode} containers per node`,
    data: { values: chartData },
    facet: { column: { field: 'metric', type: 'nominal', title: null, sort: ['warm hit %', 'cold starts per 1k calls', 'load imbalance (max/mean in flight)'] } },
    spec: {
      width: 220,
      height: 200,
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'nodes', type: 'quantitative', title: 'executor nodes', scale: { type: 'log', nice: false }, axis: { values: settings.nodes, format: 'd' } },
        y: { field: 'value', type: 'quantitative', title: null, scale: { zero: true } },
        color: { field: 'policy', type: 'nominal', title: 'policy', sort: POLICIES.map(([name]) => name), legend: { labelLimit: 260 } },
      },
    },
    resolve: { scale: { y: 'independent' } },
  });
  const svgFile = path.join(RESULTS_DIR, `${SCENARIO}.svg`);
  writeFileSync(svgFile, svg);
  process.stdout.write(`${SCENARIO}: wrote ${file} and ${svgFile} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

await main();
