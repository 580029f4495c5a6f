/**
 * deploy/k8s/ against the Kubernetes API schemas: kubernetes-models ships an ajv validator per
 * kind, generated from the Kubernetes OpenAPI spec. Those schemas check types, required fields and
 * formats but allow unknown fields (the API server rejects those under kubectl's strict field
 * validation), so the references between manifests are checked here too.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ENV_OVERRIDES } from '../../config.ts';

const dir = new URL('../../deploy/k8s/', import.meta.url);
const MANIFEST_FILES = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();

interface Resource {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // The shape depends on the kind: the schema validator is what checks it.
  [field: string]: unknown;
}
/** A resource and the file it came from. */
type Manifest = Resource & { file: string };

interface Container {
  name: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } } }>;
  envFrom?: Array<{ configMapRef?: { name: string } }>;
  ports?: Array<{ name: string; containerPort: number }>;
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface PodTemplate {
  metadata: { labels: Record<string, string> };
  spec: { containers: Container[]; volumes?: Array<{ name: string; hostPath?: { path: string; type?: string } }> };
}
interface Workload extends Manifest {
  spec: { selector: { matchLabels: Record<string, string> }; template: PodTemplate; serviceName?: string };
}

function loadManifests(): Manifest[] {
  return MANIFEST_FILES.flatMap((file) =>
    parseAllDocuments(readFileSync(new URL(file, dir), 'utf8')).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
      return { ...(doc.toJS() as Resource), file };
    }),
  );
}

type Validator = new (data: unknown) => { validate(): void };

/** kubernetes-models/<group>/<version>/<Kind>, e.g. kubernetes-models/apps/v1/Deployment. */
async function validatorFor(apiVersion: string, kind: string): Promise<Validator> {
  if (!/^[a-z0-9.]+(\/[a-z0-9]+)?$/.test(apiVersion) || !/^[A-Za-z]+$/.test(kind)) throw new Error(`not a Kubernetes apiVersion/kind: ${apiVersion} ${kind}`);
  const module = (await import(`kubernetes-models/${apiVersion}/${kind}`)) as Record<string, Validator>;
  const validator = module[kind];
  if (!validator) throw new Error(`kubernetes-models has no ${kind} in ${apiVersion}`);
  return validator;
}

/** Validates one manifest; resolves to '' or to `<file> <Kind>/<name>: <first schema error>`. */
async function schemaError(manifest: Manifest): Promise<string> {
  const { file, ...resource } = manifest;
  const Kind = await validatorFor(resource.apiVersion, resource.kind);
  try {
    new Kind(resource).validate();
    return '';
  } catch (err) {
    return `${file} ${resource.kind}/${resource.metadata?.name}: ${(err as Error).message}`;
  }
}

const byKind = (manifests: Manifest[], kind: string) => manifests.filter((m) => m.kind === kind);
const named = <T extends Manifest = Manifest>(manifests: Manifest[], kind: string, name: string) => manifests.find((m) => m.kind === kind && m.metadata.name === name) as T;
const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('deploy/k8s', () => {
  let manifests: Manifest[];
  let workloads: Workload[];
  beforeAll(() => {
    manifests = loadManifests();
    workloads = manifests.filter((m): m is Workload => ['Deployment', 'DaemonSet', 'StatefulSet'].includes(m.kind));
  });

  it('has the gateway Deployment, Service and autoscaler, the executor DaemonSet, ClickHouse and a ConfigMap', () => {
    const kinds = manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort();
    expect(kinds).toEqual(expect.arrayContaining([
      'ConfigMap/skiff-config',
      'DaemonSet/skiff-executor',
      'Deployment/skiff-gateway',
      'HorizontalPodAutoscaler/skiff-gateway',
      'Service/skiff-clickhouse',
      'Service/skiff-gateway',
      'Service/skiff-gateway-bus',
      'StatefulSet/skiff-clickhouse',
    ]));
  });

  it('validates every manifest against its Kubernetes schema', async () => {
    const errors = (await Promise.all(manifests.map(schemaError))).filter(Boolean);
    expect(errors).toEqual([]);
  });

  it('puts every namespaced resource in the skiff namespace, and kustomization lists every file', () => {
    for (const m of manifests.filter((m) => m.kind !== 'Namespace')) expect(m.metadata.namespace, `${m.kind}/${m.metadata.name}`).toBe('skiff');
    const kustomization = readFileSync(new URL('kustomization.yaml', dir), 'utf8');
    const listed = [...kustomization.matchAll(/^\s+- (\S+\.yaml)$/gm)].map((m) => m[1]).sort();
    expect(listed).toEqual(MANIFEST_FILES);
  });

  it('selects each workload’s own pods, and each Service some workload’s pods on ports they open', () => {
    for (const w of workloads) expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), w.metadata.name).toBe(true);
    for (const service of byKind(manifests, 'Service') as Array<Manifest & { spec: { selector: Record<string, string>; ports: Array<{ targetPort: string | number }> } }>) {
      const target = workloads.find((w) => matches(service.spec.selector, w.spec.template.metadata.labels));
      expect(target, `Service/${service.metadata.name} selects no workload`).toBeDefined();
      const ports = (target?.spec.template.spec.containers ?? []).flatMap((c) => c.ports ?? []);
      for (const { targetPort } of service.spec.ports) expect(ports.some((p) => p.name === targetPort || p.containerPort === targetPort), `Service/${service.metadata.name} → ${targetPort}`).toBe(true);
    }
  });

  it('refers only to ConfigMaps, Secrets and Skiff settings that exist', () => {
    const configMaps = byKind(manifests, 'ConfigMap') as Array<Manifest & { data: Record<string, string> }>;
    const secrets = byKind(manifests, 'Secret') as Array<Manifest & { stringData: Record<string, string> }>;
    // Variables only used to build CLICKHOUSE_URL (and by the ClickHouse image itself).
    const helpers = new Set(['CLICKHOUSE_USER', 'CLICKHOUSE_PASSWORD', 'CLICKHOUSE_DB']);
    for (const cm of configMaps) expect(Object.keys(cm.data).filter((k) => !(k in ENV_OVERRIDES))).toEqual([]);
    for (const w of workloads) {
      for (const c of w.spec.template.spec.containers) {
        for (const from of c.envFrom ?? []) expect(configMaps.map((m) => m.metadata.name)).toContain(from.configMapRef?.name);
        for (const e of c.env ?? []) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref) expect(Object.keys(named<Manifest & { stringData: Record<string, string> }>(secrets, 'Secret', ref.name)?.stringData ?? {})).toContain(ref.key);
          if (w.metadata.name.startsWith('skiff-') && c.name !== 'clickhouse') expect(e.name in ENV_OVERRIDES || helpers.has(e.name), `${w.metadata.name}: ${e.name}`).toBe(true);
        }
      }
    }
  });

  it('points the autoscaler at the gateway Deployment', () => {
    const hpa = named<Manifest & { spec: { scaleTargetRef: { kind: string; name: string }; minReplicas: number; maxReplicas: number } }>(manifests, 'HorizontalPodAutoscaler', 'skiff-gateway');
    expect(named(manifests, hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name)).toBeDefined();
    expect(hpa.spec.minReplicas).toBeLessThanOrEqual(hpa.spec.maxReplicas);
  });

  it('gives the executor the Docker socket and the data dir at the same path as on the host', () => {
    const executor = named<Workload>(manifests, 'DaemonSet', 'skiff-executor');
    const pod = executor.spec.template.spec;
    const mounts = pod.containers[0].volumeMounts ?? [];
    const hostPathOf = (mountPath: string) => pod.volumes?.find((v) => v.name === mounts.find((m) => m.mountPath === mountPath)?.name)?.hostPath;
    expect(hostPathOf('/var/run/docker.sock')).toEqual({ path: '/var/run/docker.sock', type: 'Socket' });
    const config = named<Manifest & { data: Record<string, string> }>(manifests, 'ConfigMap', 'skiff-config');
    expect(hostPathOf(config.data.SKIFF_DATA_DIR)?.path).toBe(config.data.SKIFF_DATA_DIR);
    expect(pod.containers[0].env).toContainEqual({ name: 'SKIFF_NODE_ID', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } });
  });

  it('points executors at the headless bus Service, on the port gateways bind', () => {
    const config = named<Manifest & { data: Record<string, string> }>(manifests, 'ConfigMap', 'skiff-config');
    const bus = named<Manifest & { spec: { clusterIP: string; ports: Array<{ port: number }> } }>(manifests, 'Service', 'skiff-gateway-bus');
    expect(bus.spec.clusterIP).toBe('None');
    expect(config.data.SKIFF_GATEWAYS).toBe(`tcp://skiff-gateway-bus.skiff.svc.cluster.local:${bus.spec.ports[0].port}`);
    const gateway = named<Workload>(manifests, 'Deployment', 'skiff-gateway').spec.template.spec.containers[0];
    expect(gateway.env).toContainEqual({ name: 'SKIFF_BUS_BIND', value: `tcp://0.0.0.0:${bus.spec.ports[0].port}` });
  });

  it('points gateways at each other through the headless Service, on the control port they bind', () => {
    const bus = named<Manifest & { spec: { clusterIP: string; ports: Array<{ name: string; port: number; targetPort: string }> } }>(manifests, 'Service', 'skiff-gateway-bus');
    const control = bus.spec.ports.find((p) => p.name === 'control');
    expect(control).toBeDefined();
    const gateway = named<Workload>(manifests, 'Deployment', 'skiff-gateway').spec.template.spec.containers[0];
    expect(gateway.ports).toContainEqual(expect.objectContaining({ name: control?.targetPort, containerPort: control?.port }));
    expect(gateway.env).toContainEqual({ name: 'SKIFF_CONTROL_BIND', value: `tcp://0.0.0.0:${control?.port}` });
    expect(gateway.env).toContainEqual({ name: 'SKIFF_PEER_GATEWAYS', value: `tcp://skiff-gateway-bus.skiff.svc.cluster.local:${control?.port}` });
  });

  /** One broken field per manifest, and the error the schema gives for it. */
  const breakages: Array<[string, (m: Record<string, any>) => void, string]> = [
    ['Namespace/skiff', (m) => { m.metadata.labels = 'skiff'; }, 'data/metadata/labels must be object'],
    ['ConfigMap/skiff-config', (m) => { m.data.SKIFF_PORT = 8080; }, 'data/data/SKIFF_PORT must be string'],
    ['Secret/skiff-clickhouse', (m) => { m.type = ['Opaque']; }, 'data/type must be string'],
    ['Deployment/skiff-gateway', (m) => { m.spec.replicas = 'two'; }, 'data/spec/replicas must be integer'],
    ['Service/skiff-gateway', (m) => { m.spec.ports[0].port = '8080/tcp'; }, 'data/spec/ports/0/port must be integer'],
    ['Service/skiff-gateway-bus', (m) => { delete m.spec.ports[0].port; }, 'data/spec/ports/0 must have required property port'],
    ['HorizontalPodAutoscaler/skiff-gateway', (m) => { delete m.spec.maxReplicas; }, 'data/spec must have required property maxReplicas'],
    ['PodDisruptionBudget/skiff-gateway', (m) => { m.spec.selector = 'gateway'; }, 'data/spec/selector must be object'],
    ['DaemonSet/skiff-executor', (m) => { delete m.spec.template.spec.containers[0].name; }, 'data/spec/template/spec/containers/0 must have required property name'],
    ['StatefulSet/skiff-clickhouse', (m) => { m.spec.volumeClaimTemplates[0].spec.accessModes = 'ReadWriteOnce'; }, 'data/spec/volumeClaimTemplates/0/spec/accessModes must be array'],
    ['Service/skiff-clickhouse', (m) => { delete m.spec.ports[0].port; }, 'data/spec/ports/0 must have required property port'],
  ];

  it('has a breakage case for every manifest', () => {
    expect(breakages.map(([id]) => id).sort()).toEqual(manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort());
  });

  it.each(breakages)('rejects %s with one field broken, naming the field', async (id, mutate, message) => {
    const original = manifests.find((m) => `${m.kind}/${m.metadata.name}` === id) as Manifest;
    expect(await schemaError(original)).toBe('');
    const broken = structuredClone(original) as Record<string, any>;
    mutate(broken);
    expect(await schemaError(broken as Manifest)).toBe(`${original.file} ${id}: ${message}`);
  });
});
