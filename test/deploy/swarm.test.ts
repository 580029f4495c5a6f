import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ENV_OVERRIDES } from '../../config.ts';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url);
const stackFile = new URL('deploy/swarm/skiff.yml', root).pathname;
const dockerfile = readFileSync(new URL('deploy/Dockerfile', root), 'utf8');

/** docker stack config validates against the Compose file schema on the client: no swarm needed. */
const dockerCli = (() => {
  try {
    execFileSync('docker', ['stack', 'config', '--help'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

interface Service {
  image: string;
  command?: string[];
  user?: string;
  environment?: Record<string, string>;
  ports?: Array<{ target: number; published: number | string; mode?: string }>;
  volumes?: Array<{ type: string; source: string; target: string }>;
  deploy?: { mode?: string; replicas?: number; placement?: { constraints?: string[]; max_replicas_per_node?: number } };
}
interface Stack {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
  networks?: Record<string, { driver?: string }>;
}

/** Runs `docker stack config` on a file or on YAML text; resolves to its stdout, rejects with its stderr. */
async function stackConfig(input: { file: string } | { yaml: string }, env: Record<string, string> = {}): Promise<string> {
  const args = ['stack', 'config', '-c', 'file' in input ? input.file : '-'];
  const child = run('docker', args, { env: { ...process.env, ...env }, timeout: 20_000 });
  if ('yaml' in input) {
    child.child.stdin?.end(input.yaml);
  }
  try {
    return (await child).stdout;
  } catch (err) {
    throw new Error(String((err as { stderr?: string }).stderr ?? err).trim());
  }
}

describe.skipIf(!dockerCli)('deploy/swarm/skiff.yml', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = parse(await stackConfig({ file: stackFile })) as Stack;
  });

  it('passes docker stack config (the Compose schema and interpolation)', () => {
    expect(Object.keys(stack.services).sort()).toEqual(['clickhouse', 'executor', 'gateway']);
  });

  it('runs the gateway replicated behind the routing mesh, listening on every interface', () => {
    const gateway = stack.services.gateway;
    expect(gateway.image).toBe('skiff/skiff:latest');
    expect(gateway.command).toEqual(['skiff', 'gateway']);
    expect(gateway.deploy?.mode).toBe('replicated');
    expect(gateway.deploy?.placement?.max_replicas_per_node).toBe(1);
    expect(gateway.ports).toEqual([expect.objectContaining({ target: 8080, mode: 'ingress' })]);
    expect(gateway.environment).toMatchObject({ SKIFF_HOST: '0.0.0.0', SKIFF_PORT: '8080', SKIFF_BUS_BIND: 'tcp://0.0.0.0:7100', CLICKHOUSE_URL: 'http://clickhouse:8123' });
  });

  it('runs one executor per node with the Docker socket and the data dir at the same path as on the host', () => {
    const executor = stack.services.executor;
    expect(executor.deploy?.mode).toBe('global');
    expect(executor.command).toEqual(['skiff', 'executor']);
    expect(executor.volumes).toContainEqual(expect.objectContaining({ type: 'bind', source: '/var/run/docker.sock', target: '/var/run/docker.sock' }));
    const dataDir = executor.environment?.SKIFF_DATA_DIR ?? '';
    expect(executor.volumes).toContainEqual(expect.objectContaining({ type: 'bind', source: dataDir, target: dataDir }));
    expect(executor.environment?.SKIFF_NODE_ID).toBe('{{.Node.Hostname}}');
  });

  it('points executors at the gateway service’s bus port', () => {
    const busPort = stack.services.gateway.environment?.SKIFF_BUS_BIND.split(':').pop();
    for (const endpoint of (stack.services.executor.environment?.SKIFF_GATEWAYS ?? '').split(',')) {
      expect(endpoint).toMatch(new RegExp(`^tcp://(tasks\\.)?gateway:${busPort}$`));
    }
  });

  it('points each gateway at every replica’s control channel by the tasks.<service> name', () => {
    const env = stack.services.gateway.environment ?? {};
    const controlPort = env.SKIFF_CONTROL_BIND?.split(':').pop();
    expect(env.SKIFF_CONTROL_BIND).toBe(`tcp://0.0.0.0:${controlPort}`);
    expect(controlPort).not.toBe(env.SKIFF_BUS_BIND.split(':').pop());
    // tasks.gateway resolves to one address per replica; gateway alone to the service's one VIP.
    expect(env.SKIFF_PEER_GATEWAYS).toBe(`tcp://tasks.gateway:${controlPort}`);
  });

  it('keeps ClickHouse data in a named volume on the labelled node', () => {
    const clickhouse = stack.services.clickhouse;
    expect(clickhouse.volumes).toContainEqual(expect.objectContaining({ type: 'volume', source: 'clickhouse-data', target: '/var/lib/clickhouse' }));
    expect(stack.volumes).toHaveProperty('clickhouse-data');
    expect(clickhouse.deploy?.placement?.constraints).toContain('node.labels.skiff.clickhouse == true');
    expect(stack.networks?.skiff?.driver).toBe('overlay');
  });

  it('sets only environment variables that Skiff reads (a typo would be silently ignored)', () => {
    for (const name of ['gateway', 'executor']) {
      const unknown = Object.keys(stack.services[name].environment ?? {}).filter((key) => !(key in ENV_OVERRIDES));
      expect(unknown, `${name} sets variables config.ts does not read`).toEqual([]);
    }
  });

  it('takes the image, replicas and gateway list from the environment', async () => {
    const env = { SKIFF_IMAGE: 'registry.example:5000/skiff:1.2.3', SKIFF_GATEWAY_REPLICAS: '3', SKIFF_GATEWAYS: 'tcp://gw-a:7100,tcp://gw-b:7100' };
    const custom = parse(await stackConfig({ file: stackFile }, env)) as Stack;
    expect(custom.services.gateway.image).toBe(env.SKIFF_IMAGE);
    expect(custom.services.executor.image).toBe(env.SKIFF_IMAGE);
    expect(custom.services.gateway.deploy?.replicas).toBe(3);
    expect(custom.services.executor.environment?.SKIFF_GATEWAYS).toBe(env.SKIFF_GATEWAYS);
  });

  it.each<[string, (s: Record<string, any>) => void, RegExp]>([
    ['a misspelt deploy key', (s) => { s.services.executor.deploy.mod = 'global'; }, /services\.executor\.deploy Additional property mod is not allowed/],
    ['replicas that are not a number', (s) => { s.services.gateway.deploy.replicas = 'two'; }, /services\.gateway\.deploy\.replicas must be a integer/],
    ['a port that is not a number', (s) => { s.services.gateway.ports[0].target = 'http'; }, /services\.gateway\.ports\.0\.target must be a integer/],
  ])('rejects a stack with %s', async (_name, mutate, message) => {
    const broken = parse(readFileSync(stackFile, 'utf8'), { merge: true }) as Record<string, any>;
    mutate(broken);
    await expect(stackConfig({ yaml: stringify(broken) })).rejects.toThrow(message);
  });
});

describe('deploy/Dockerfile', () => {
  it('builds on node:20-bookworm-slim with npm ci and runs the skiff command', () => {
    expect(dockerfile).toMatch(/^FROM node:20-bookworm-slim AS deps$/m);
    expect(dockerfile).toMatch(/^FROM node:20-bookworm-slim$/m);
    expect(dockerfile).toMatch(/RUN npm ci\b/);
    expect(dockerfile).toMatch(/^CMD \["skiff", "gateway"\]$/m);
  });

  it('copies only paths that exist in the repository', () => {
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1].split(/\s+/));
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources.filter((s) => !s.includes('*'))) expect(existsSync(new URL(source, root)), source).toBe(true);
  });
});
