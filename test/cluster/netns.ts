/**
 * Test hosts on one machine: network namespaces on a private bridge, each running a gateway and
 * an executor (`ip netns exec`), all sharing the machine's Docker engine. ClickHouse (on the
 * machine's loopback) is reached through a forwarder on the bridge. Traffic stays on the bridge
 * and loopback; the subnet is one this run made.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'cli', 'bin.ts');
const HTTP_PORT = 8080;
const BUS_PORT = 7100;
const CONTROL_PORT = 7200;
const CLICKHOUSE_PORT = 8123;
const READY_TIMEOUT_MS = 60_000;
/** With namedGateways: the name executors connect to, standing for every gateway. */
export const BUS_NAME = 'skiff-gateway-bus';
/** With namedGateways: the name gateways find their peers by (setControlName changes what it stands for). */
export const CONTROL_NAME = 'skiff-gateway-control';
/** `ip netns exec` bind-mounts /etc/netns/<namespace>/hosts over /etc/hosts: a resolver per host. */
const NETNS_ETC = '/etc/netns';

export interface ClusterHost {
  index: number;
  namespace: string;
  ip: string;
  /** Gateway URL ('' on a host without a gateway). */
  url: string;
  nodeId: string;
  gateway: ChildProcess | undefined;
  executor: ChildProcess | undefined;
  /** The executor's data dir ('' on a host without an executor). */
  executorDataDir: string;
}

export interface Cluster {
  hosts: ClusterHost[];
  database: string;
  /** Everything the processes printed, for failure messages. */
  output: string[];
  /** Cuts a host off the network and SIGKILLs its processes: a host that died. */
  failHost(index: number): Promise<void>;
  /** Takes a host's link down, its processes left running: a host that vanished from the network. */
  cutHost(index: number): void;
  /** With namedGateways: makes CONTROL_NAME resolve to the gateways of these hosts (1-based) on every host. */
  setControlName(indices: number[]): void;
  /** SIGKILLs the executor of a host (its gateway keeps running). */
  killExecutor(index: number): Promise<void>;
  /** Starts the executor of a host again (same node id and data dir); resolves once every gateway has it. */
  restartExecutor(index: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  hosts: number;
  /** Hosts 1..gateways run a gateway (default: every host). */
  gateways?: number;
  /** Hosts 1..executors run an executor (default: every host). */
  executors?: number;
  /** The machine's ClickHouse server (loopback). */
  clickhouseUrl: string;
  heartbeatIntervalMs?: number;
  env?: Record<string, string>;
  /** Extra environment for the gateway of host N (1-based). */
  gatewayEnv?: Record<number, Record<string, string>>;
  /**
   * Gateways are given by name, as in Swarm and Kubernetes: executors connect to
   * `tcp://${BUS_NAME}:port`, each gateway subscribes to `tcp://${CONTROL_NAME}:port` (the same
   * entry everywhere, its own address included), resolved through each host's own /etc/hosts.
   */
  namedGateways?: boolean;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function quietly(fn: () => void): void {
  try {
    fn();
  } catch {
    // Teardown of something already gone.
  }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Forwards bridgeIp:port to 127.0.0.1:port, so namespaces reach the machine's ClickHouse. */
async function forward(bridgeIp: string, port: number): Promise<Server> {
  const server = createServer((inbound) => {
    const outbound = connect(port, '127.0.0.1');
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, bridgeIp, () => resolve());
  });
  return server;
}

/** Builds the hosts and starts a gateway and an executor on each; resolves when all are connected. */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const tag = randomBytes(2).toString('hex');
  const subnet = `10.231.${randomInt(1, 250)}`;
  const bridge = `skbr${tag}`;
  const bridgeIp = `${subnet}.254`;
  const database = `skiff_cluster_${tag}`;
  const output: string[] = [];
  const children: ChildProcess[] = [];
  const namespaces: string[] = [];
  let forwarder: Server | undefined;

  const teardown = async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.all(children.map(exited));
    // A host failed on purpose had its executor SIGKILLed: nobody removed its containers.
    const docker = new Dockerode();
    for (const index of Array.from({ length: options.hosts }, (_, i) => i + 1)) {
      const leftovers = await docker.listContainers({ all: true, filters: { label: [`skiff.node=cluster-${tag}-h${index}`] } });
      await Promise.all(leftovers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    }
    forwarder?.close();
    for (const ns of namespaces) quietly(() => ip('netns', 'del', ns));
    for (const ns of namespaces) rmSync(path.join(NETNS_ETC, ns), { recursive: true, force: true });
    quietly(() => rmdirSync(NETNS_ETC));
    quietly(() => ip('link', 'del', bridge));
  };

  try {
    ip('link', 'add', 'name', bridge, 'type', 'bridge');
    ip('addr', 'add', `${bridgeIp}/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    const hostsMeta = Array.from({ length: options.hosts }, (_, i) => ({ index: i + 1, namespace: `skiff-${tag}-h${i + 1}`, ip: `${subnet}.${i + 1}` }));
    for (const host of hostsMeta) {
      const outer = `skv${tag}${host.index}`;
      const inner = `skp${tag}${host.index}`;
      ip('netns', 'add', host.namespace);
      namespaces.push(host.namespace);
      ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', inner);
      ip('link', 'set', inner, 'netns', host.namespace);
      ip('link', 'set', outer, 'master', bridge);
      ip('link', 'set', outer, 'up');
      ip('netns', 'exec', host.namespace, 'ip', 'link', 'set', 'lo', 'up');
      ip('netns', 'exec', host.namespace, 'ip', 'addr', 'add', `${host.ip}/24`, 'dev', inner);
      ip('netns', 'exec', host.namespace, 'ip', 'link', 'set', inner, 'up');
    }
    forwarder = await forward(bridgeIp, Number(new URL(options.clickhouseUrl).port || CLICKHOUSE_PORT));

    const gatewayCount = options.gateways ?? options.hosts;
    const executorCount = options.executors ?? options.hosts;
    const busEndpoints = hostsMeta.slice(0, gatewayCount).map((h) => `tcp://${h.ip}:${BUS_PORT}`);
    const controlEndpoints = hostsMeta.slice(0, gatewayCount).map((h) => `tcp://${h.ip}:${CONTROL_PORT}`);
    /** Writes every host's /etc/hosts (in place: running processes see the change). */
    const writeHostsFiles = (controlHosts: number[]) => {
      const gatewayIps = hostsMeta.slice(0, gatewayCount).map((h) => h.ip);
      const lines = ['127.0.0.1 localhost', ...gatewayIps.map((a) => `${a} ${BUS_NAME}`), ...controlHosts.map((i) => `${hostsMeta[i - 1].ip} ${CONTROL_NAME}`)];
      for (const host of hostsMeta) {
        mkdirSync(path.join(NETNS_ETC, host.namespace), { recursive: true });
        writeFileSync(path.join(NETNS_ETC, host.namespace, 'hosts'), `${lines.join('\n')}\n`);
      }
    };
    if (options.namedGateways) writeHostsFiles(hostsMeta.slice(0, gatewayCount).map((h) => h.index));
    const executorGateways = options.namedGateways ? `tcp://${BUS_NAME}:${BUS_PORT}` : busEndpoints.join(',');
    const peersOf = (index: number) => (options.namedGateways ? `tcp://${CONTROL_NAME}:${CONTROL_PORT}` : controlEndpoints.filter((_, i) => i !== index - 1).join(','));
    const common = {
      ...process.env,
      CLICKHOUSE_URL: `http://${bridgeIp}:${CLICKHOUSE_PORT}`,
      SKIFF_CLICKHOUSE_DATABASE: database,
      SKIFF_LOG_LEVEL: 'warn',
      ...(options.heartbeatIntervalMs ? { SKIFF_HEARTBEAT_INTERVAL_MS: String(options.heartbeatIntervalMs) } : {}),
      ...options.env,
    };
    const run = (namespace: string, args: string[], env: NodeJS.ProcessEnv, label: string): ChildProcess => {
      const child = spawn('ip', ['netns', 'exec', namespace, process.execPath, '--import', 'tsx', CLI, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      createInterface({ input: child.stderr! }).on('line', (line) => output.push(`${label}: ${line}`));
      return child;
    };

    const hosts: ClusterHost[] = [];
    // Gateways first, one at a time: the first one creates the ClickHouse database.
    for (const host of hostsMeta) {
      const nodeId = `cluster-${tag}-h${host.index}`;
      if (host.index > gatewayCount) {
        hosts.push({ ...host, url: '', nodeId, gateway: undefined, executor: undefined, executorDataDir: '' });
        continue;
      }
      const gateway = run(host.namespace, ['gateway', '--ready-json'], {
        ...common,
        SKIFF_HOST: host.ip,
        SKIFF_PORT: String(HTTP_PORT),
        SKIFF_BUS_BIND: busEndpoints[host.index - 1],
        SKIFF_CONTROL_BIND: controlEndpoints[host.index - 1],
        SKIFF_PEER_GATEWAYS: peersOf(host.index),
        SKIFF_DATA_DIR: mkdtempSync(path.join(os.tmpdir(), `skiff-gw${host.index}-`)),
        ...options.gatewayEnv?.[host.index],
      }, `gateway ${host.index}`);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`gateway ${host.index} not ready:\n${output.join('\n')}`)), READY_TIMEOUT_MS);
        createInterface({ input: gateway.stdout! }).on('line', (line) => {
          if (!line.startsWith('ready ')) return;
          clearTimeout(timer);
          resolve();
        });
        gateway.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`gateway ${host.index} exited (${code}):\n${output.join('\n')}`));
        });
      });
      hosts.push({ ...host, url: `http://${host.ip}:${HTTP_PORT}`, nodeId, gateway, executor: undefined, executorDataDir: '' });
    }
    const startExecutor = (host: ClusterHost) => {
      host.executorDataDir ||= mkdtempSync(path.join(os.tmpdir(), `skiff-ex${host.index}-`));
      host.executor = run(host.namespace, ['executor'], {
        ...common,
        SKIFF_NODE_ID: host.nodeId,
        SKIFF_GATEWAYS: executorGateways,
        SKIFF_DATA_DIR: host.executorDataDir,
      }, `executor ${host.index}`);
    };
    for (const host of hosts.slice(0, executorCount)) startExecutor(host);
    await waitForExecutors(hosts, executorCount, output);

    return {
      hosts,
      database,
      output,
      async failHost(index: number) {
        const host = hosts[index - 1];
        quietly(() => ip('link', 'set', `skv${tag}${index}`, 'down'));
        const running = [host.executor, host.gateway].filter((c): c is ChildProcess => c !== undefined);
        for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await Promise.all(running.map(exited));
      },
      setControlName(indices: number[]) {
        if (!options.namedGateways) throw new Error('setControlName needs namedGateways');
        writeHostsFiles(indices);
      },
      cutHost(index: number) {
        ip('link', 'set', `skv${tag}${index}`, 'down');
      },
      async killExecutor(index: number) {
        const executor = hosts[index - 1].executor;
        if (!executor) throw new Error(`host ${index} runs no executor`);
        if (executor.exitCode === null && executor.signalCode === null) executor.kill('SIGKILL');
        await exited(executor);
      },
      async restartExecutor(index: number) {
        const host = hosts[index - 1];
        const previous = host.executor;
        if (previous && previous.exitCode === null && previous.signalCode === null) throw new Error(`the executor of host ${index} is still running`);
        startExecutor(host);
        await waitForExecutors(hosts, hosts.filter((h) => h.executor !== undefined && h.executor.exitCode === null && h.executor.signalCode === null).length, output);
      },
      stop: teardown,
    };
  } catch (err) {
    await teardown();
    throw err;
  }
}

/** Waits until every gateway reports `count` executors connected. */
async function waitForExecutors(hosts: ClusterHost[], count: number, output: string[]): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (const host of hosts.filter((h) => h.gateway !== undefined)) {
    for (;;) {
      try {
        const res = await fetch(`${host.url}/readyz`);
        const body = (await res.json()) as { executors?: number };
        if ((body.executors ?? 0) >= count) break;
      } catch {
        // Not listening yet.
      }
      const dead = hosts.find((h) => h.executor !== undefined && (h.executor.exitCode !== null || h.executor.signalCode !== null));
      if (dead) throw new Error(`executor ${dead.index} exited before connecting:\n${output.join('\n')}`);
      if (Date.now() > deadline) throw new Error(`gateway ${host.index} never saw ${count} executors:\n${output.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
