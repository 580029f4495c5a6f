/**
 * Which gateways to connect to: every address a gateway name resolves to. In Swarm
 * (`tasks.gateway`) and behind a headless Kubernetes Service one name stands for all gateway
 * replicas, while a ZeroMQ connect to a name reaches only one of them.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/** dns.lookup with `all: true`, injectable for tests. */
export type LookupAll = (host: string) => Promise<Array<{ address: string; family: number }>>;

const defaultLookup: LookupAll = (host) => dnsLookup(host, { all: true });

/** True when some endpoint names a host rather than an address (worth re-resolving). */
export function hasNamedGateways(endpoints: readonly string[]): boolean {
  return endpoints.some((endpoint) => {
    const host = tcpHost(endpoint);
    return host !== undefined && isIP(host) === 0;
  });
}

function tcpHost(endpoint: string): string | undefined {
  const match = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(endpoint);
  return match ? match[1].replace(/^\[|\]$/g, '') : undefined;
}

/**
 * Expands each `tcp://name:port` to `tcp://<address>:port` for every address of the name; IP
 * endpoints and other transports stay as they are; a name that does not resolve now is kept so
 * ZeroMQ keeps trying it. The result has no duplicates and keeps the configured order.
 */
export async function resolveGatewayEndpoints(endpoints: readonly string[], lookup: LookupAll = defaultLookup): Promise<string[]> {
  const out = new Set<string>();
  for (const endpoint of endpoints) {
    const host = tcpHost(endpoint);
    if (host === undefined || isIP(host) !== 0) {
      out.add(endpoint);
      continue;
    }
    const port = endpoint.slice(endpoint.lastIndexOf(':') + 1);
    try {
      const addresses = await lookup(host);
      if (addresses.length === 0) out.add(endpoint);
      for (const { address, family } of addresses) out.add(`tcp://${family === 6 ? `[${address}]` : address}:${port}`);
    } catch {
      out.add(endpoint);
    }
  }
  return [...out];
}
