/**
 * Deploying a function folder: pack it, send it to the gateway as `PUT /system/functions/:name`.
 */
import type { GatewayClient } from './client.ts';
import { packFunctionDir, readFunctionManifest } from './pack.ts';

export interface DeployedFunction {
  name: string;
  version: number;
  codeHash: string;
  codeBytes: number;
}

/** Packs `dir` and deploys it as `name`, with its skiff.json handler, limits and env. */
export async function deployDir(client: GatewayClient, dir: string, name: string, env?: Record<string, string>): Promise<DeployedFunction> {
  const manifest = await readFunctionManifest(dir);
  const bundle = await packFunctionDir(dir);
  const manifestEnv = typeof manifest.env === 'object' && manifest.env !== null ? (manifest.env as Record<string, string>) : undefined;
  return client.json<DeployedFunction>('PUT', `/system/functions/${encodeURIComponent(name)}`, {
    runtime: 'node20',
    code: bundle.toString('base64'),
    handler: manifest.handler,
    limits: manifest.limits,
    ...(typeof manifest.network === 'boolean' ? { network: manifest.network } : {}),
    env: { ...manifestEnv, ...env },
  });
}
