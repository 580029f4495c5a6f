/**
 * Keeps a gateway's executors and its peer gateways in step with its registry: every deploy or
 * removal goes to the connected executors (DEPLOY/UNDEPLOY over the ROUTER, specs only) and, when
 * it was made here, to the peer gateways over the control channel; a peer's deploys come back the
 * same way. Peer gateways get the code with the spec, so each serves the bundle to executors that
 * fetch it (bundle-server.ts) without a storage read; gateways are few, executors many.
 * Peers may be given by a name that stands for every gateway replica (bus/discovery.ts).
 */
import { ControlChannel } from '../bus/index.ts';
import type { SkiffConfig } from '../config.ts';
import type { Initiator } from './initiator.ts';
import type { FunctionRegistry } from './registry.ts';

/** Starts the control channel (a no-op publisher for a single gateway) and wires the registry. */
export async function startControlChannel(config: SkiffConfig, registry: FunctionRegistry, initiator: Initiator): Promise<ControlChannel> {
  const control = new ControlChannel(
    { bindEndpoint: config.bus.controlBindEndpoint, peerEndpoints: config.bus.peerControlEndpoints, resolveIntervalMs: config.bus.peerResolveIntervalMs },
    {
      onDeploy: (header, code) => registry.applyRemote({ spec: header.spec, code, createdAtMs: Date.now() }),
      onUndeploy: (header) => registry.removeRemote(header.name),
    },
  );
  registry.listen({
    onDeployed(definition, origin) {
      initiator.announceDeploy(definition);
      if (origin === 'local') control.publishDeploy({ spec: definition.spec }, definition.code);
    },
    onRemoved(name, origin) {
      initiator.announceUndeploy(name);
      if (origin === 'local') control.publishUndeploy({ name });
    },
  });
  await control.start();
  return control;
}
