/**
 * Endpoint discovery for the bus: every address a `tcp://name:port` stands for. In Swarm
 * (`tasks.gateway`) and behind a headless Kubernetes Service one name stands for all replicas of
 * a service, while a ZeroMQ connect to a name reaches only one of them. Executors expand the
 * gateways' ROUTER endpoints with it, gateways their peers' control endpoints.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import os from 'node:os';

/** dns.lookup with `all: true`, injectable for tests. */
export type LookupAll = (host: string) => Promise<Array<{ address: string; family: number }>>;

const defaultLookup: LookupAll = (host) => dnsLookup(host, { all: true });

/** True when some endpoint names a host rather than an address (worth re-resolving). */
export function hasNamedEndpoints(endpoints: readonly string[]): boolean {
  return endpoints.some((endpoint) => {
    const host = tcpHost(endpoint);
    return host !== undefined && isIP(host) === 0;
  });
}

/** The host of `tcp://host:port` (brackets of an IPv6 address removed), else undefined. */
function tcpHost(endpoint: string): string | undefined {
  const match = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(endpoint);
  return match ? match[1].replace(/^\[|\]$/g, '') : undefined;
}

function tcpEndpoint(address: string, port: string): string {
  return `tcp://${isIP(address) === 6 ? `[${address}]` : address}:${port}`;
}

/**
 * Expands each `tcp://name:port` to `tcp://<address>:port` for every address of the name; IP
 * endpoints and other transports stay as they are; a name that does not resolve now is kept so
 * ZeroMQ keeps trying it. The result has no duplicates and keeps the configured order.
 */
export async function resolveEndpoints(endpoints: readonly string[], lookup: LookupAll = defaultLookup): Promise<string[]> {
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
      for (const { address } of addresses) out.add(tcpEndpoint(address, port));
    } catch {
      out.add(endpoint);
    }
  }
  return [...out];
}

/**
 * The endpoints under which other processes reach a socket bound to `bindEndpoint` (as
 * `lastEndpoint` reports it: the port chosen): the bound address, or every local interface
 * address for a wildcard bind. Used to leave a process's own address out of a name's expansion.
 */
export function ownEndpoints(bindEndpoint: string, interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): Set<string> {
  const host = tcpHost(bindEndpoint);
  if (host === undefined) return new Set(bindEndpoint === '' ? [] : [bindEndpoint]);
  const port = bindEndpoint.slice(bindEndpoint.lastIndexOf(':') + 1);
  if (host !== '0.0.0.0' && host !== '::' && host !== '*') return new Set([tcpEndpoint(host, port)]);
  const own = new Set<string>();
  for (const infos of Object.values(interfaces)) {
    // Every family: an address of this machine is this process whichever family the bind took.
    for (const info of infos ?? []) own.add(tcpEndpoint(info.address, port));
  }
  return own;
}
