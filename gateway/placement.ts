/**
 * Placement: which executor runs an invocation. Pure (no I/O, no clock): the caller passes the
 * executors it knows with their load, and a PlacementState that keeps the hash rings between calls.
 *
 * choosePlacement, in order:
 *   1. an executor that reports an idle warm container for the function (least loaded of those);
 *   2. the function's home executor on a consistent-hash ring (virtual nodes, keyed by nodeId so a
 *      restarted executor keeps its functions), with bounded load (Mirrokni, Thorup, Zadimoghaddam,
 *      "Consistent Hashing with Bounded Loads", 2018): an executor takes a call only while its load is
 *      under ceil((1 + ε) · average load, counting the call being placed); otherwise the walk goes on
 *      to the next executor on the ring;
 *   3. the least loaded executor (when no executor is under the bound with credit, or the walk
 *      passed MAX_RING_WALK executors without finding one).
 * Executors with no credit are never chosen. With `callerZone` set, executors in that zone are used
 * first; other zones only when none there has credit. `random` and `leastLoaded` are baselines with
 * the same signature and the same credit and zone rules.
 *
 * Hot path: runs once per invocation. A call makes one pass over the executors (field reads only)
 * and allocates its result and, off the warm path, a ring walk's iterator; the rings are rebuilt
 * only when the set of executors changes. Measured (npm run bench:placement, per policy): 1–2 µs
 * a decision at 10 or 100 executors, 10–25 µs at 1,000. Build `options` without object spread per
 * call: a spread options object costs more than the decision.
 */

/** What placement needs to know of a function's warm containers on an executor. A Set<string> fits. */
export interface WarmSet {
  has(functionName: string): boolean;
}

/** One executor as placement sees it; maps one-to-one from the bus's ExecutorPeer. */
export interface PlacementCandidate {
  /** The bus routing id (changes when the executor restarts). */
  readonly peerId: string;
  /** The executor's node id (stable across restarts): the hash rings are keyed by it. */
  readonly nodeId: string;
  /** Failure domain or site; undefined when zones are not configured. */
  readonly zone?: string;
  /** Calls the executor accepts now; 0 means it is skipped. */
  readonly credits: number;
  /** Calls running on it now: its load. */
  readonly inFlight: number;
  /** Functions for which it reports an idle warm container. */
  readonly warmFunctions?: WarmSet;
}

/** Why an executor was chosen. */
export type PlacementReason = 'warm' | 'home' | 'spill' | 'least-loaded' | 'random';

export interface Placement<C extends PlacementCandidate> {
  readonly candidate: C;
  readonly reason: PlacementReason;
  /** Executors passed over on the ring (over the load bound or out of credit) before this one, or before giving up the walk. */
  readonly skipped: number;
}

export interface PlacementOptions {
  /** ε of the load bound: an executor takes at most ceil((1 + ε) · average load). Default 0.25. */
  readonly loadEpsilon?: number;
  /**
   * Hold warm executors to the load bound too (default false: an idle warm container is taken
   * wherever it is, since its executor has credit for it).
   */
  readonly boundWarm?: boolean;
  /**
   * The nodeIds that report an idle warm container for this function, when the caller keeps that
   * index (function → executors). Given, it replaces asking every candidate's warmFunctions: with
   * hundreds of executors that scan is most of a decision's cost. Unknown nodeIds are ignored.
   */
  readonly warmNodeIds?: Iterable<string>;
  /** The zone of the gateway placing the call; its executors are preferred. */
  readonly callerZone?: string;
  /** Uniform [0, 1) source for the `random` policy; default Math.random. */
  readonly random?: () => number;
}

/** The shape shared by choosePlacement and the baselines. */
export type PlacementPolicy = <C extends PlacementCandidate>(
  functionName: string,
  candidates: readonly C[],
  state: PlacementState,
  options?: PlacementOptions,
) => Placement<C> | undefined;

export const DEFAULT_LOAD_EPSILON = 0.25;
/**
 * Executors passed over on the ring before falling back to the least loaded. When most executors
 * are out of credit (a saturated cluster) the next taker may be far round the ring; this keeps a
 * decision's cost bounded exactly when the gateway is busiest.
 */
export const MAX_RING_WALK = 16;
/** Points per executor on a ring: each one's share of keys is then even ± about 8% (1/√160, one σ); the load bound evens out the rest. */
export const DEFAULT_VIRTUAL_NODES = 160;

/**
 * A 53-bit string hash (bryc's cyrb53, public domain): fast, well mixed, stable across versions
 * and platforms, so homes do not move when the gateway is upgraded.
 */
export function hash53(text: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/**
 * A consistent-hash ring with virtual nodes. Adding or removing a member moves only the keys that
 * member gains or loses; every other key keeps its owner.
 */
export class HashRing {
  readonly #virtualNodes: number;
  readonly #members = new Set<string>();
  /** Point hashes in ascending order, and the member owning each point. */
  #points = new Float64Array(0);
  #owners: string[] = [];
  #stale = false;

  constructor(virtualNodes: number = DEFAULT_VIRTUAL_NODES) {
    if (!Number.isInteger(virtualNodes) || virtualNodes < 1) throw new RangeError(`placement: virtualNodes must be a positive integer, got ${virtualNodes}`);
    this.#virtualNodes = virtualNodes;
  }

  get size(): number {
    return this.#members.size;
  }

  has(member: string): boolean {
    return this.#members.has(member);
  }

  members(): string[] {
    return [...this.#members];
  }

  /** Adds a member; false if it was there already. */
  add(member: string): boolean {
    if (this.#members.has(member)) return false;
    this.#members.add(member);
    this.#stale = true;
    return true;
  }

  /** Removes a member (its keys go to the next members on the ring); false if it was absent. */
  remove(member: string): boolean {
    if (!this.#members.delete(member)) return false;
    this.#stale = true;
    return true;
  }

  /** The member owning `key`, or undefined for an empty ring. */
  home(key: string): string | undefined {
    for (const member of this.walk(key)) return member;
    return undefined;
  }

  /** Members in ring order from `key`'s point, each once: the home first, then its successors. */
  *walk(key: string): Generator<string, void, undefined> {
    if (this.#stale) this.#rebuild();
    const points = this.#points;
    const owners = this.#owners;
    const total = points.length;
    if (total === 0) return;
    let at = lowerBound(points, hash53(key));
    if (at === total) at = 0;
    const first = owners[at];
    yield first;
    if (this.#members.size === 1) return;
    const seen = new Set<string>([first]);
    for (let step = 1; step < total && seen.size < this.#members.size; step++) {
      const owner = owners[(at + step) % total];
      if (seen.has(owner)) continue;
      seen.add(owner);
      yield owner;
    }
  }

  #rebuild(): void {
    const entries: Array<{ point: number; owner: string }> = [];
    for (const member of this.#members) {
      for (let i = 0; i < this.#virtualNodes; i++) entries.push({ point: hash53(`${member}\u0000${i}`), owner: member });
    }
    // Ties (vanishingly rare at 53 bits) are broken by name, so the order never depends on insertion.
    entries.sort((a, b) => a.point - b.point || (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0));
    this.#points = Float64Array.from(entries, (e) => e.point);
    this.#owners = entries.map((e) => e.owner);
    this.#stale = false;
  }
}

/** First index whose value is >= target (values ascending). */
function lowerBound(values: Float64Array, target: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid] < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The ring of all executors, next to the per-zone rings. */
const ALL_ZONES = '\u0000all';

export interface PlacementStateOptions {
  /** Points per executor on each ring. Default DEFAULT_VIRTUAL_NODES. */
  virtualNodes?: number;
}

/**
 * What choosePlacement keeps between calls: one ring of all executors and one per zone, and where
 * each nodeId sits in the candidates array. Pass the same array again with loads changed in place,
 * or a new array whenever executors come or go; the rings follow the membership.
 */
export class PlacementState {
  readonly #virtualNodes: number;
  readonly #rings = new Map<string, HashRing>();
  #indexed: readonly PlacementCandidate[] | undefined;
  #indexedLength = -1;
  #indexByNode = new Map<string, number>();
  /** nodeId and zone of each candidate at the last rebuild, in order. */
  #members: Array<readonly [string, string | undefined]> = [];

  constructor(options: PlacementStateOptions = {}) {
    this.#virtualNodes = options.virtualNodes ?? DEFAULT_VIRTUAL_NODES;
    if (!Number.isInteger(this.#virtualNodes) || this.#virtualNodes < 1) {
      throw new RangeError(`placement: virtualNodes must be a positive integer, got ${options.virtualNodes}`);
    }
  }

  /** The ring of one zone, or of all executors when `zone` is undefined. */
  ring(zone?: string): HashRing | undefined {
    return this.#rings.get(zone ?? ALL_ZONES);
  }

  /**
   * Brings the rings in step with `candidates`: free when the same array comes again, O(n) string
   * comparisons for a new array of the same executors in the same order, a rebuild otherwise.
   */
  sync(candidates: readonly PlacementCandidate[]): void {
    if (candidates === this.#indexed && candidates.length === this.#indexedLength) return;
    if (this.#sameMembers(candidates)) {
      this.#indexed = candidates;
      return;
    }
    const indexByNode = new Map<string, number>();
    const membersByRing = new Map<string, Set<string>>([[ALL_ZONES, new Set()]]);
    candidates.forEach((candidate, index) => {
      // Two peers with one nodeId (a restart overlapping its predecessor): the first holds the ring slot.
      if (indexByNode.has(candidate.nodeId)) return;
      indexByNode.set(candidate.nodeId, index);
      membersByRing.get(ALL_ZONES)?.add(candidate.nodeId);
      if (candidate.zone === undefined) return;
      let zoneMembers = membersByRing.get(candidate.zone);
      if (!zoneMembers) membersByRing.set(candidate.zone, (zoneMembers = new Set()));
      zoneMembers.add(candidate.nodeId);
    });
    for (const [key, ring] of this.#rings) {
      const members = membersByRing.get(key);
      if (!members) this.#rings.delete(key);
      else for (const member of ring.members()) if (!members.has(member)) ring.remove(member);
    }
    for (const [key, members] of membersByRing) {
      let ring = this.#rings.get(key);
      if (!ring) this.#rings.set(key, (ring = new HashRing(this.#virtualNodes)));
      for (const member of members) ring.add(member);
    }
    this.#indexed = candidates;
    this.#indexedLength = candidates.length;
    this.#indexByNode = indexByNode;
    this.#members = candidates.map((c) => [c.nodeId, c.zone]);
  }

  #sameMembers(candidates: readonly PlacementCandidate[]): boolean {
    const members = this.#members;
    if (candidates.length !== members.length) return false;
    for (let i = 0; i < members.length; i++) {
      if (candidates[i].nodeId !== members[i][0] || candidates[i].zone !== members[i][1]) return false;
    }
    return true;
  }

  /** The candidate with `nodeId` (the first, if several), re-indexing once if the array changed in place. */
  candidateOf<C extends PlacementCandidate>(candidates: readonly C[], nodeId: string): C | undefined {
    this.sync(candidates);
    const index = this.#indexByNode.get(nodeId);
    if (index === undefined) return undefined;
    const found = candidates[index];
    if (found?.nodeId === nodeId) return found;
    this.#indexed = undefined;
    this.#members = [];
    this.sync(candidates);
    const again = this.#indexByNode.get(nodeId);
    return again === undefined ? undefined : candidates[again];
  }
}

function loadEpsilonOf(options: PlacementOptions): number {
  const epsilon = options.loadEpsilon ?? DEFAULT_LOAD_EPSILON;
  if (!Number.isFinite(epsilon) || epsilon < 0) throw new RangeError(`placement: loadEpsilon must be a finite number >= 0, got ${epsilon}`);
  return epsilon;
}

/** The caller's zone when one of its executors has credit; otherwise undefined (all zones). */
function zoneToUse(candidates: readonly PlacementCandidate[], callerZone: string | undefined): string | undefined {
  if (callerZone === undefined) return undefined;
  for (const c of candidates) if (c.zone === callerZone && c.credits > 0) return callerZone;
  return undefined;
}

function inZone(candidate: PlacementCandidate, zone: string | undefined): boolean {
  return zone === undefined || candidate.zone === zone;
}

/** Fewer calls in flight wins; then more credit; else the earlier one stays. */
function lighter(a: PlacementCandidate, b: PlacementCandidate): boolean {
  return a.inFlight < b.inFlight || (a.inFlight === b.inFlight && a.credits > b.credits);
}

function lightest<C extends PlacementCandidate>(candidates: readonly C[], zone: string | undefined): C | undefined {
  let best: C | undefined;
  for (const c of candidates) {
    if (c.credits <= 0 || !inZone(c, zone)) continue;
    if (best === undefined || lighter(c, best)) best = c;
  }
  return best;
}

/**
 * Warm executor first, then the function's home by consistent hashing with bounded load, then the
 * least loaded; caller's zone first; executors with no credit skipped. Undefined when none has credit.
 */
export const choosePlacement: PlacementPolicy = (functionName, candidates, state, options = {}) => {
  const epsilon = loadEpsilonOf(options);
  state.sync(candidates);
  const zone = zoneToUse(candidates, options.callerZone);

  // One pass: the load of the zone, its least loaded executor with credit, its least loaded warm one.
  type C = (typeof candidates)[number];
  const scanWarm = options.warmNodeIds === undefined;
  let warm: C | undefined;
  let least: C | undefined;
  let totalLoad = 0;
  let members = 0;
  for (const c of candidates) {
    if (zone !== undefined && c.zone !== zone) continue;
    totalLoad += c.inFlight;
    members++;
    if (c.credits <= 0) continue;
    if (least === undefined || lighter(c, least)) least = c;
    if (scanWarm && c.warmFunctions?.has(functionName) && (warm === undefined || lighter(c, warm))) warm = c;
  }
  if (!scanWarm) {
    for (const nodeId of options.warmNodeIds ?? []) {
      const c = state.candidateOf(candidates, nodeId);
      if (c && c.credits > 0 && inZone(c, zone) && (warm === undefined || lighter(c, warm))) warm = c;
    }
  }
  if (least === undefined) return undefined;
  const bound = Math.ceil(((1 + epsilon) * (totalLoad + 1)) / members);
  // `warm` is the least loaded warm executor: if it is over the bound, so are the others.
  if (warm && !(options.boundWarm === true && warm.inFlight >= bound)) return { candidate: warm, reason: 'warm', skipped: 0 };
  const ring = state.ring(zone);
  let skipped = 0;
  // Walk only when some executor takes the call: the least loaded one with credit is under the bound.
  if (least.inFlight < bound && ring) {
    for (const nodeId of ring.walk(functionName)) {
      const c = state.candidateOf(candidates, nodeId);
      if (c && c.credits > 0 && c.inFlight < bound) return { candidate: c, reason: skipped === 0 ? 'home' : 'spill', skipped };
      if (++skipped >= MAX_RING_WALK) break;
    }
  }
  return { candidate: least, reason: 'least-loaded', skipped };
};

/** Baseline: any executor with credit, uniformly (caller's zone first). */
export const random: PlacementPolicy = (_functionName, candidates, _state, options = {}) => {
  const zone = zoneToUse(candidates, options.callerZone);
  let eligible = 0;
  for (const c of candidates) if (c.credits > 0 && inZone(c, zone)) eligible++;
  if (eligible === 0) return undefined;
  let pick = Math.min(eligible - 1, Math.floor((options.random ?? Math.random)() * eligible));
  for (const c of candidates) {
    if (c.credits <= 0 || !inZone(c, zone)) continue;
    if (pick-- === 0) return { candidate: c, reason: 'random', skipped: 0 };
  }
  return undefined;
};

/** Baseline: the executor with the fewest calls in flight (caller's zone first). */
export const leastLoaded: PlacementPolicy = (_functionName, candidates, _state, options = {}) => {
  const least = lightest(candidates, zoneToUse(candidates, options.callerZone));
  return least ? { candidate: least, reason: 'least-loaded', skipped: 0 } : undefined;
};
