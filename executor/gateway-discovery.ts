/**
 * Which gateways to connect to: every address a gateway name resolves to (`tasks.gateway` in
 * Swarm, a headless Service in Kubernetes). The expansion is the bus's (bus/discovery.ts), shared
 * with the gateways' discovery of their peers; these are the executor's names for it.
 */
import { hasNamedEndpoints, resolveEndpoints, type LookupAll } from '../bus/index.ts';

export type { LookupAll } from '../bus/index.ts';

/** True when some gateway endpoint names a host rather than an address (worth re-resolving). */
export function hasNamedGateways(endpoints: readonly string[]): boolean {
  return hasNamedEndpoints(endpoints);
}

/** Expands each `tcp://name:port` gateway endpoint to one endpoint per address (see resolveEndpoints). */
export function resolveGatewayEndpoints(endpoints: readonly string[], lookup?: LookupAll): Promise<string[]> {
  return resolveEndpoints(endpoints, lookup);
}
