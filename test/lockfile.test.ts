import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('package-lock.json', () => {
  it('records every optional platform package of chdb so that npm ci accepts it', () => {
    const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8')) as { packages: Record<string, { optionalDependencies?: Record<string, string> }> };
    const optional = Object.keys(lock.packages['node_modules/chdb']?.optionalDependencies ?? {});
    expect(optional.length).toBeGreaterThan(0);
    const missing = optional.filter((name) => lock.packages[`node_modules/${name}`] === undefined);
    expect(missing, 'run: node scripts/fix-lock-chdb.mjs').toEqual([]);
  });
});
