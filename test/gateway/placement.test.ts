import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  choosePlacement,
  DEFAULT_LOAD_EPSILON,
  hash53,
  HashRing,
  leastLoaded,
  MAX_RING_WALK,
  PlacementState,
  random,
  type PlacementCandidate,
  type PlacementOptions,
  type PlacementPolicy,
} from '../../gateway/placement.ts';
import { SeededRandom } from '../../bench/trace/random.ts';

interface Executor extends PlacementCandidate {
  credits: number;
  inFlight: number;
  warmFunctions: Set<string>;
}

function executor(nodeId: string, fields: Partial<Omit<Executor, 'nodeId'>> = {}): Executor {
  return { peerId: `${nodeId}/1/abcd`, nodeId, credits: 8, inFlight: 0, warmFunctions: new Set(), ...fields };
}

const fleet = (count: number, fields: Partial<Omit<Executor, 'nodeId'>> = {}) => Array.from({ length: count }, (_, i) => executor(`node-${i}`, fields));

function place(fn: string, candidates: Executor[], options?: PlacementOptions, state = new PlacementState()) {
  return choosePlacement(fn, candidates, state, options);
}

/** The function's home on a fresh ring of `candidates`. */
function homeOf(fn: string, candidates: Executor[]): string | undefined {
  const state = new PlacementState();
  state.sync(candidates);
  return state.ring()?.home(fn);
}

/** A seeded uniform source (mulberry32) so the random baseline is repeatable. */
function seeded(seed: number): () => number {
  const random = new SeededRandom(seed);
  return () => random.next();
}

describe('hash53', () => {
  it('gives the same value for the same key on every version, so homes do not move on upgrade', () => {
    expect(hash53('echo')).toBe(1422732214730263);
    expect(hash53('')).toBe(3338908027751811);
    expect(hash53('echo')).toBe(hash53('echo', 0));
    expect(hash53('echo')).not.toBe(hash53('echo', 1));
    expect(hash53('echo')).toBeLessThan(2 ** 53);
  });
});

describe('HashRing', () => {
  it('spreads keys across members within 25% of even with the default virtual nodes', () => {
    const ring = new HashRing();
    for (let i = 0; i < 10; i++) ring.add(`node-${i}`);
    const counts = new Map<string, number>();
    for (let k = 0; k < 20_000; k++) {
      const home = ring.home(`fn-${k}`) ?? '';
      counts.set(home, (counts.get(home) ?? 0) + 1);
    }
    expect(counts.size).toBe(10);
    for (const count of counts.values()) {
      expect(count).toBeGreaterThan(2_000 * 0.75);
      expect(count).toBeLessThan(2_000 * 1.25);
    }
  });

  it('walks every member once, the home first', () => {
    const ring = new HashRing(16);
    for (const m of ['a', 'b', 'c', 'd']) ring.add(m);
    const walk = [...ring.walk('echo')];
    expect(walk[0]).toBe(ring.home('echo'));
    expect([...walk].sort()).toEqual(['a', 'b', 'c', 'd']);
  });

  it('has no home when empty, and one member owns every key', () => {
    const ring = new HashRing();
    expect(ring.home('echo')).toBeUndefined();
    ring.add('only');
    expect([...ring.walk('echo')]).toEqual(['only']);
    expect(ring.add('only')).toBe(false);
    expect(ring.remove('absent')).toBe(false);
  });

  it('moves only the keys of a member that leaves, each to its next member on the ring', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 2, maxLength: 24 }),
        fc.uniqueArray(fc.string({ maxLength: 16 }), { minLength: 1, maxLength: 60 }),
        fc.nat(),
        (members, keys, pick) => {
          const ring = new HashRing(8);
          for (const m of members) ring.add(m);
          const leaving = members[pick % members.length];
          const before = new Map(keys.map((k) => [k, [...ring.walk(k)]]));
          ring.remove(leaving);
          for (const key of keys) {
            const [home, next] = before.get(key) ?? [];
            expect(ring.home(key)).toBe(home === leaving ? next : home);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('moves keys only to a member that joins', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 2, maxLength: 24 }),
        fc.uniqueArray(fc.string({ maxLength: 16 }), { minLength: 1, maxLength: 60 }),
        (members, keys) => {
          const [joining, ...rest] = members;
          const ring = new HashRing(8);
          for (const m of rest) ring.add(m);
          const before = new Map(keys.map((k) => [k, ring.home(k)]));
          ring.add(joining);
          for (const key of keys) expect([before.get(key), joining]).toContain(ring.home(key));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('choosePlacement', () => {
  it('prefers an executor that reports an idle warm container, even when it is busier than the home', () => {
    const executors = fleet(5);
    const home = homeOf('echo', executors);
    const warm = executors.find((e) => e.nodeId !== home) as Executor;
    warm.warmFunctions.add('echo');
    warm.inFlight = 5;
    expect(place('echo', executors)).toEqual({ candidate: warm, reason: 'warm', skipped: 0 });
  });

  it('holds warm executors to the load bound when asked to', () => {
    const executors = fleet(4);
    const warm = executors.find((e) => e.nodeId !== homeOf('echo', executors)) as Executor;
    warm.warmFunctions.add('echo');
    warm.inFlight = 3; // Bound: ceil(1.25 * (3 + 1) / 4) = 2.
    expect(place('echo', executors)?.reason).toBe('warm');
    const placed = place('echo', executors, { boundWarm: true });
    expect(placed?.reason).toBe('home');
    expect(placed?.candidate).not.toBe(warm);
  });

  it('takes warm executors from the caller’s index instead of asking every executor', () => {
    const executors = fleet(6);
    const [a, b] = executors.filter((e) => e.nodeId !== homeOf('echo', executors));
    a.inFlight = 2;
    b.inFlight = 1;
    // The index wins over warmFunctions (stale here), and unknown nodeIds are ignored.
    executors[0].warmFunctions.add('echo');
    expect(place('echo', executors, { warmNodeIds: new Set([a.nodeId, b.nodeId, 'gone']) })).toEqual({ candidate: b, reason: 'warm', skipped: 0 });
    expect(place('echo', executors, { warmNodeIds: [] })?.reason).toBe('home');
  });

  it('takes the least loaded of several warm executors', () => {
    const executors = fleet(4);
    for (const e of executors) e.warmFunctions.add('echo');
    executors[0].inFlight = 3;
    executors[1].inFlight = 1;
    executors[2].inFlight = 2;
    executors[3].inFlight = 1;
    executors[3].credits = 20;
    expect(place('echo', executors)?.candidate).toBe(executors[3]);
  });

  it('sends a function without a warm container to its home executor', () => {
    const executors = fleet(10);
    for (const fn of ['echo', 'hello', 'thumbnail', 'resize']) {
      const placed = place(fn, executors);
      expect(placed?.reason).toBe('home');
      expect(placed?.candidate.nodeId).toBe(homeOf(fn, executors));
    }
  });

  it('keeps a function at home when its executor restarts under a new peer id', () => {
    const executors = fleet(6);
    const before = place('echo', executors)?.candidate.nodeId;
    const restarted = executors.map((e) => (e.nodeId === before ? { ...e, peerId: `${e.nodeId}/2/ffff` } : e));
    const after = place('echo', restarted);
    expect(after?.candidate.nodeId).toBe(before);
    expect(after?.candidate.peerId).toBe(`${before}/2/ffff`);
  });

  it('walks to the next executor on the ring when the home is at the load bound', () => {
    const executors = fleet(4);
    const state = new PlacementState();
    state.sync(executors);
    const [home, next] = [...(state.ring()?.walk('echo') ?? [])];
    // Total load 3 over 4 executors: bound ceil(1.25 * (3 + 1) / 4) = 2; the home at 3 is over it.
    (executors.find((e) => e.nodeId === home) as Executor).inFlight = 3;
    expect(place('echo', executors, {}, state)).toMatchObject({ reason: 'spill', skipped: 1, candidate: { nodeId: next } });
    // With ε = 3 the bound is ceil(4 * 4 / 4) = 4: the home at 3 is under it.
    expect(place('echo', executors, { loadEpsilon: 3 }, state)).toMatchObject({ reason: 'home', candidate: { nodeId: home } });
  });

  it('never places a call above ceil((1 + ε) · average load), counting that call', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ inFlight: fc.nat(40), credits: fc.nat(4) }), { minLength: 1, maxLength: 30 }),
        fc.string({ maxLength: 10 }),
        fc.constantFrom(0, 0.1, 0.25, 1),
        (loads, fn, loadEpsilon) => {
          const executors = loads.map((load, i) => executor(`n${i}`, load));
          const placed = place(fn, executors, { loadEpsilon });
          if (executors.every((e) => e.credits === 0)) {
            expect(placed).toBeUndefined();
            return;
          }
          expect(placed?.candidate.credits).toBeGreaterThan(0);
          const total = executors.reduce((sum, e) => sum + e.inFlight, 0);
          const bound = Math.ceil(((1 + loadEpsilon) * (total + 1)) / executors.length);
          if (executors.some((e) => e.credits > 0 && e.inFlight < bound)) {
            expect(placed?.candidate.inFlight).toBeLessThan(bound);
          }
          if (placed?.reason === 'least-loaded') {
            // The walk found no executor under the bound with credit, or gave up after MAX_RING_WALK.
            const takers = executors.filter((e) => e.credits > 0 && e.inFlight < bound).length;
            expect(takers === 0 || placed.skipped === MAX_RING_WALK).toBe(true);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('gives up the ring walk after MAX_RING_WALK executors and takes the least loaded', () => {
    const executors = fleet(200, { credits: 0, inFlight: 1 });
    const state = new PlacementState();
    state.sync(executors);
    const walk = [...(state.ring()?.walk('echo') ?? [])];
    // The only executor with credit is far round the ring from the function's home.
    const far = executors.find((e) => e.nodeId === walk[150]) as Executor;
    far.credits = 4;
    expect(choosePlacement('echo', executors, state)).toEqual({ candidate: far, reason: 'least-loaded', skipped: MAX_RING_WALK });
    const near = executors.find((e) => e.nodeId === walk[3]) as Executor;
    near.credits = 4;
    expect(choosePlacement('echo', executors, state)).toEqual({ candidate: near, reason: 'spill', skipped: 3 });
  });

  it('skips executors with no credit, warm or home', () => {
    const executors = fleet(3);
    const home = executors.find((e) => e.nodeId === homeOf('echo', executors)) as Executor;
    home.credits = 0;
    home.warmFunctions.add('echo');
    const placed = place('echo', executors);
    expect(placed?.candidate).not.toBe(home);
    expect(placed?.reason).toBe('spill');
  });

  it('places nothing when no executor has credit', () => {
    const executors = fleet(3, { credits: 0 });
    for (const policy of [choosePlacement, random, leastLoaded]) expect(policy('echo', executors, new PlacementState())).toBeUndefined();
    expect(choosePlacement('echo', [], new PlacementState())).toBeUndefined();
  });

  it('moves only the leaving executor’s functions when one leaves (no load)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 40 }), fc.nat(), fc.uniqueArray(fc.string({ maxLength: 12 }), { minLength: 1, maxLength: 80 }), (count, pick, functions) => {
        const executors = fleet(count);
        const state = new PlacementState({ virtualNodes: 16 });
        const before = new Map(functions.map((fn) => [fn, choosePlacement(fn, executors, state)?.candidate.nodeId]));
        const leaving = executors[pick % count].nodeId;
        const remaining = executors.filter((e) => e.nodeId !== leaving);
        for (const fn of functions) {
          const after = choosePlacement(fn, remaining, state)?.candidate.nodeId;
          if (before.get(fn) !== leaving) expect(after).toBe(before.get(fn));
          else expect(after).not.toBe(leaving);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('prefers executors in the caller’s zone, even over a warm one elsewhere', () => {
    const executors = [executor('a1', { zone: 'a' }), executor('a2', { zone: 'a' }), executor('b1', { zone: 'b' })];
    executors[2].warmFunctions.add('echo');
    for (let i = 0; i < 50; i++) expect(place(`fn-${i}`, executors, { callerZone: 'a' })?.candidate.zone).toBe('a');
    expect(place('echo', executors, { callerZone: 'a' })?.reason).toBe('home');
    expect(place('echo', executors, { callerZone: 'b' })?.reason).toBe('warm');
  });

  it('stays in the caller’s zone whenever one of its executors has credit, for every policy', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ zone: fc.constantFrom('a', 'b', 'c'), inFlight: fc.nat(10), credits: fc.nat(3), warm: fc.boolean() }), { minLength: 1, maxLength: 20 }),
        fc.constantFrom('a', 'b', 'c'),
        (specs, callerZone) => {
          const executors = specs.map((spec, i) => executor(`n${i}`, { zone: spec.zone, inFlight: spec.inFlight, credits: spec.credits, warmFunctions: new Set(spec.warm ? ['echo'] : []) }));
          const local = executors.some((e) => e.zone === callerZone && e.credits > 0);
          for (const policy of [choosePlacement, random, leastLoaded]) {
            const placed = policy('echo', executors, new PlacementState(), { callerZone });
            if (local) expect(placed?.candidate.zone).toBe(callerZone);
            else expect(placed === undefined).toBe(executors.every((e) => e.credits === 0));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('uses other zones when none in the caller’s zone has credit, or the zone is unknown', () => {
    const executors = [executor('a1', { zone: 'a', credits: 0 }), executor('b1', { zone: 'b' })];
    expect(place('echo', executors, { callerZone: 'a' })?.candidate.nodeId).toBe('b1');
    expect(place('echo', executors, { callerZone: 'nowhere' })?.candidate.nodeId).toBe('b1');
  });

  it('homes a function inside the caller’s zone by that zone’s own ring', () => {
    const executors = [...fleet(4).map((e) => ({ ...e, zone: 'a' })), ...['b0', 'b1', 'b2'].map((id) => executor(id, { zone: 'b' }))];
    const state = new PlacementState();
    state.sync(executors);
    for (const fn of ['echo', 'hello', 'resize']) {
      expect(choosePlacement(fn, executors, state, { callerZone: 'b' })?.candidate.nodeId).toBe(state.ring('b')?.home(fn));
    }
  });

  it('follows loads changed in place and membership changed by a new array', () => {
    const executors = fleet(3);
    const state = new PlacementState();
    const home = choosePlacement('echo', executors, state)?.candidate as Executor;
    home.credits = 0;
    expect(choosePlacement('echo', executors, state)?.candidate).not.toBe(home);
    home.credits = 8;
    const fewer = executors.filter((e) => e !== home);
    expect(choosePlacement('echo', fewer, state)?.candidate).not.toBe(home);
    expect(state.ring()?.has(home.nodeId)).toBe(false);
    expect(choosePlacement('echo', executors, state)?.candidate).toBe(home);
  });

  it('takes a new array of the same executors (as an initiator builds per call) without rebuilding the rings', () => {
    const executors = fleet(5);
    const state = new PlacementState();
    const first = choosePlacement('echo', executors, state)?.candidate.nodeId;
    const ring = state.ring();
    const copies = executors.map((e) => ({ ...e, peerId: `${e.nodeId}/9/0000` }));
    expect(choosePlacement('echo', copies, state)?.candidate).toBe(copies.find((e) => e.nodeId === first));
    expect(state.ring()).toBe(ring);
    const reordered = [...copies].reverse();
    expect(choosePlacement('echo', reordered, state)?.candidate.nodeId).toBe(first);
  });

  it('re-indexes when an executor was replaced in place in the same array', () => {
    const executors = fleet(3);
    const state = new PlacementState();
    const home = choosePlacement('echo', executors, state)?.candidate as Executor;
    const at = executors.indexOf(home);
    const other = executors[(at + 1) % 3];
    executors[at] = executor('newcomer');
    executors[(at + 1) % 3] = other;
    const placed = choosePlacement('echo', executors, state);
    expect(placed?.candidate.nodeId).not.toBe(home.nodeId);
    expect(state.ring()?.has(home.nodeId)).toBe(false);
    expect(state.ring()?.has('newcomer')).toBe(true);
  });

  it.each<[string, PlacementOptions | { virtualNodes: number }, string]>([
    ['negative ε', { loadEpsilon: -0.1 }, 'placement: loadEpsilon must be a finite number >= 0, got -0.1'],
    ['NaN ε', { loadEpsilon: Number.NaN }, 'placement: loadEpsilon must be a finite number >= 0, got NaN'],
    ['infinite ε', { loadEpsilon: Number.POSITIVE_INFINITY }, 'placement: loadEpsilon must be a finite number >= 0, got Infinity'],
    ['zero virtual nodes', { virtualNodes: 0 }, 'placement: virtualNodes must be a positive integer, got 0'],
    ['fractional virtual nodes', { virtualNodes: 1.5 }, 'placement: virtualNodes must be a positive integer, got 1.5'],
  ])('rejects %s', (_name, options, message) => {
    const run = () => ('virtualNodes' in options ? new PlacementState(options) : place('echo', fleet(2), options));
    expect(run).toThrow(RangeError);
    expect(run).toThrow(message);
  });

  it('defaults ε to 0.25', () => {
    expect(DEFAULT_LOAD_EPSILON).toBe(0.25);
  });
});

describe('baselines', () => {
  it('random picks uniformly among executors with credit', () => {
    const executors = fleet(4);
    executors[2].credits = 0;
    const counts = new Map<string, number>();
    const rng = seeded(7);
    for (let i = 0; i < 3_000; i++) {
      const id = random('echo', executors, new PlacementState(), { random: rng })?.candidate.nodeId ?? '';
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect(counts.has('node-2')).toBe(false);
    for (const count of counts.values()) {
      expect(count).toBeGreaterThan(850);
      expect(count).toBeLessThan(1_150);
    }
  });

  it('random stays in range when the source returns values near 1', () => {
    expect(random('echo', fleet(3), new PlacementState(), { random: () => 0.9999999999999999 })?.candidate.nodeId).toBe('node-2');
  });

  it('least loaded picks the fewest calls in flight, then the most credit', () => {
    const executors = fleet(3);
    executors[0].inFlight = 2;
    executors[1].inFlight = 1;
    executors[2].inFlight = 1;
    executors[2].credits = 9;
    expect(leastLoaded('echo', executors, new PlacementState())?.candidate).toBe(executors[2]);
  });

  it.each<[string, PlacementPolicy]>([
    ['random', random],
    ['leastLoaded', leastLoaded],
  ])('%s keeps to the caller’s zone while it has credit', (_name, policy) => {
    const executors = [executor('a1', { zone: 'a', inFlight: 5 }), executor('b1', { zone: 'b' })];
    for (let i = 0; i < 20; i++) expect(policy(`fn-${i}`, executors, new PlacementState(), { callerZone: 'a', random: seeded(i) })?.candidate.nodeId).toBe('a1');
  });
});
