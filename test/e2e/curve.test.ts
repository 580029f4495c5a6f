/**
 * A whole Skiff with its bus encrypted and executors authenticated by CURVE key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCurveKeyPair } from '../../bus/index.ts';
import { call, json, startSkiff, type SkiffUnderTest } from './harness.ts';

describe('skiff with a CURVE-encrypted bus', () => {
  let skiff: SkiffUnderTest;

  beforeAll(async () => {
    const gateway = generateCurveKeyPair();
    const executor = generateCurveKeyPair();
    skiff = await startSkiff({
      backend: 'chdb',
      env: {
        SKIFF_BUS_CURVE_PUBLIC_KEY: gateway.publicKey,
        SKIFF_BUS_CURVE_SECRET_KEY: gateway.secretKey,
        SKIFF_BUS_CURVE_CLIENT_KEYS: executor.publicKey,
        SKIFF_EXECUTOR_CURVE_PUBLIC_KEY: executor.publicKey,
        SKIFF_EXECUTOR_CURVE_SECRET_KEY: executor.secretKey,
        SKIFF_GATEWAY_CURVE_PUBLIC_KEY: gateway.publicKey,
      },
    });
  });

  afterAll(async () => {
    await skiff?.stop();
  });

  it('connects the executor with its allowed key and runs calls over the encrypted bus', async () => {
    const ready = json<{ executors: number }>(await call(`${skiff.url}/readyz`));
    expect(ready.executors).toBe(1);
    const reply = await call(`${skiff.url}/function/echo`, { method: 'POST', body: 'sealed', headers: { 'content-type': 'text/plain' } });
    expect(reply.body.toString()).toBe('sealed');
    expect(reply.status).toBe(200);
  });
});
