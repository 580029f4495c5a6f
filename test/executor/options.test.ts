/** The executor's pool, stem cell, keep-alive and hardening options: one case per message. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../config.ts';
import { DEFAULT_MEMORY_SHARE, resolveMemoryBudgetMb } from '../../executor/memory-budget.ts';

describe('executor options', () => {
  it.each([
    [{ memoryBudgetMb: -1 }, {}, "executor.memoryBudgetMb must be a non-negative integer (0: half of the machine's memory)"],
    [{ stemCells: 1.5 }, {}, 'executor.stemCells must be a non-negative integer'],
    [{ stemCells: 4, maxStemCells: 2 }, {}, 'executor.maxStemCells must be at least executor.stemCells'],
    [{ stemCellMemoryMb: 0 }, {}, 'executor.stemCellMemoryMb must be a positive integer'],
    [{ keepAlivePolicy: 'lru' }, {}, "executor.keepAlivePolicy must be 'adaptive' or 'fixed'"],
    [{ maxContainersPerFunction: 0 }, {}, 'executor.maxContainersPerFunction must be a positive integer'],
    [{ maxQueuedPerFunction: -3 }, {}, 'executor.maxQueuedPerFunction must be a non-negative integer'],
    [{ pidsLimit: 0 }, {}, 'executor.pidsLimit must be a positive integer'],
    [{ tmpfsMb: 0 }, {}, 'executor.tmpfsMb must be a positive integer'],
    [{ defaultCpus: 0 }, {}, 'executor.defaultCpus must be a positive number of cores'],
    [{ functionNetwork: '' }, {}, 'executor.functionNetwork must name a Docker network'],
    [{ bundleFetchTimeoutMs: 0 }, {}, 'executor.bundleFetchTimeoutMs must be a positive integer'],
    [{ maxConcurrentBundleFetches: 0 }, {}, 'executor.maxConcurrentBundleFetches must be a positive integer'],
    [{}, { SKIFF_BUNDLE_FETCH_TIMEOUT_MS: 'soon' }, 'SKIFF_BUNDLE_FETCH_TIMEOUT_MS (executor.bundleFetchTimeoutMs) must be an integer'],
    [{}, { SKIFF_KEEPALIVE_POLICY: 'never' }, "executor.keepAlivePolicy must be 'adaptive' or 'fixed'"],
    [{}, { SKIFF_STEM_CELLS: 'many' }, 'SKIFF_STEM_CELLS (executor.stemCells) must be an integer'],
  ])('rejects executor %j with env %j naming the option', (executor, env, message) => {
    expect(() => loadConfig({ executor } as never, env)).toThrow(ConfigError);
    expect(() => loadConfig({ executor } as never, env)).toThrow(message);
  });

  it('takes the stem cells, budget and policy from the environment', () => {
    const config = loadConfig({}, { SKIFF_STEM_CELLS: '3', SKIFF_MEMORY_BUDGET_MB: '2048', SKIFF_KEEPALIVE_POLICY: 'fixed' });
    expect(config.executor).toMatchObject({ stemCells: 3, memoryBudgetMb: 2048, keepAlivePolicy: 'fixed' });
  });

  it('sizes the default memory budget as a share of the machine', () => {
    expect(resolveMemoryBudgetMb(0, 8 * 1024 ** 3)).toBe(8 * 1024 * DEFAULT_MEMORY_SHARE);
    expect(resolveMemoryBudgetMb(1500, 8 * 1024 ** 3)).toBe(1500);
  });
});
