import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULTS, ENV_OVERRIDES, loadConfig, MAX_LOG_LINE_BYTES, redactConfig } from '../config.ts';
import { MAX_STORED_LOG_LINE_CHARS } from '../storage/index.ts';

describe('configuration', () => {
  it('loads the defaults and freezes the result', () => {
    const config = loadConfig({}, {});
    expect(config.gateway.maxBodyBytes).toBe(6 * 1024 * 1024);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.gateway)).toBe(true);
    expect(() => {
      (config.gateway as { port: number }).port = 1;
    }).toThrow();
  });

  it('caps executor.maxLogLineBytes at the longest line storage keeps (executors write rows storage takes as they are)', () => {
    expect(MAX_LOG_LINE_BYTES).toBe(MAX_STORED_LOG_LINE_CHARS);
    expect(loadConfig({ executor: { maxLogLineBytes: MAX_LOG_LINE_BYTES } }, {}).executor.maxLogLineBytes).toBe(MAX_LOG_LINE_BYTES);
  });

  it('applies code overrides, then environment variables over them', () => {
    const config = loadConfig({ gateway: { port: 9000 }, storage: { maxBatchRows: 5 } }, { SKIFF_PORT: '9100', SKIFF_GATEWAYS: 'tcp://a:1, tcp://b:2' });
    expect(config.gateway.port).toBe(9100);
    expect(config.storage.maxBatchRows).toBe(5);
    expect(config.executor.gatewayEndpoints).toEqual(['tcp://a:1', 'tcp://b:2']);
  });

  it.each([
    [{ gateway: { maxBodyBytes: 0 } }, {}, 'gateway.maxBodyBytes must be a positive integer'],
    [{ gateway: { maxBodyBytes: 1.5 } }, {}, 'gateway.maxBodyBytes must be a positive integer'],
    [{ gateway: { port: 70000 } }, {}, 'gateway.port must be 0..65535'],
    [{ executor: { maxLogLineBytes: 65537 } }, {}, 'executor.maxLogLineBytes must be at most 65536'],
    [{ storage: { threadNice: 20 } }, {}, 'storage.threadNice must be an integer 0..19'],
    [{}, { SKIFF_STORAGE_THREAD_NICE: '-1' }, 'storage.threadNice must be an integer 0..19'],
    [{ bus: { bindEndpoint: 'localhost:7100' } }, {}, 'bus.bindEndpoint must be a ZeroMQ endpoint'],
    [{ executor: { gatewayEndpoints: [] } }, {}, 'executor.gatewayEndpoints must list at least one endpoint'],
    [{ storage: { clickhouseUrl: 'ftp://x' } }, {}, 'storage.clickhouseUrl must be an http(s) URL or empty'],
    [{ storage: { database: 'bad-name' } }, {}, 'storage.database must be a plain identifier'],
    [{}, { SKIFF_CLICKHOUSE_CLUSTER: 'skiff' }, 'storage.cluster.name needs storage.clickhouseUrl'],
    [{ storage: { clickhouseUrl: 'http://ch:8123', cluster: { name: 'a cluster' } } }, {}, 'storage.cluster.name must be a cluster name of <remote_servers>'],
    [{ storage: { clickhouseUrl: 'http://ch:8123', cluster: { name: 'skiff', zooKeeperPath: '/clickhouse/tables/{shard}/skiff' } } }, {}, 'storage.cluster.zooKeeperPath must contain {shard} and {table}'],
    [{ storage: { cluster: { zooKeeperPath: "/x/'{shard}/{table}" } } }, {}, 'storage.cluster.zooKeeperPath must be a ZooKeeper path'],
    [{ storage: { cluster: { replicaName: "{replica}'" } } }, {}, 'storage.cluster.replicaName must be a replica name or macro such as {replica}'],
    [{ gateway: { tls: { certFile: 'a.crt', keyFile: '' } } }, {}, 'gateway.tls.certFile and gateway.tls.keyFile must be set together'],
    [{ gateway: { maxBodyByte: 5 } }, {}, 'unknown option gateway.maxBodyByte'],
    [{}, { SKIFF_PORT: 'eighty' }, 'SKIFF_PORT (gateway.port) must be an integer, got "eighty"'],
    [{}, { SKIFF_LOG_LEVEL: 'loud' }, 'logLevel'],
    [{ bus: { curve: { publicKey: 'short', secretKey: '', allowedClientKeys: [] } } }, {}, 'bus.curve.publicKey must be a 40-character z85 CURVE key'],
    [{}, { SKIFF_BUS_CURVE_PUBLIC_KEY: 'rA(30U(1SqA+[bF@8:jKzfMt+P!0x!IYCVci/}D4' }, 'bus.curve.publicKey and bus.curve.secretKey must be set together'],
    [{}, { SKIFF_BUS_CURVE_CLIENT_KEYS: 'not-a-key' }, 'bus.curve.allowedClientKeys[] must be a 40-character z85 CURVE key'],
    [{}, { SKIFF_EXECUTOR_CURVE_SECRET_KEY: 'a.m[8V&pH2ZRth$<i+=FEe?JljuHPbE1bT{}!zD0' }, 'executor.curve.publicKey, executor.curve.secretKey and executor.curve.gatewayPublicKey must be set together'],
  ])('rejects %j with env %j naming the option', (overrides, env, message) => {
    expect(() => loadConfig(overrides as never, env)).toThrow(ConfigError);
    expect(() => loadConfig(overrides as never, env)).toThrow(message);
  });

  it('redacts credentials in the ClickHouse URL, the TLS key path and CURVE secret keys when printed', () => {
    const secretKey = 'a.m[8V&pH2ZRth$<i+=FEe?JljuHPbE1bT{}!zD0';
    const publicKey = 'rA(30U(1SqA+[bF@8:jKzfMt+P!0x!IYCVci/}D4';
    const config = loadConfig(
      { storage: { clickhouseUrl: 'http://user:secret@127.0.0.1:8123' }, gateway: { tls: { certFile: '/c.crt', keyFile: '/k.key' } } },
      { SKIFF_BUS_CURVE_PUBLIC_KEY: publicKey, SKIFF_BUS_CURVE_SECRET_KEY: secretKey, SKIFF_EXECUTOR_CURVE_PUBLIC_KEY: publicKey, SKIFF_EXECUTOR_CURVE_SECRET_KEY: secretKey, SKIFF_GATEWAY_CURVE_PUBLIC_KEY: publicKey },
    );
    expect(config.bus.curve.secretKey).toBe(secretKey);
    const shown = JSON.stringify(redactConfig(config));
    expect(shown).not.toContain(secretKey);
    expect(shown).toContain(publicKey);
    expect(shown).not.toContain('secret@');
    expect(shown).not.toContain('/k.key');
    expect(shown).toContain('http://***@127.0.0.1:8123');
  });

  it('documents every option and every environment variable in docs/configuration.md', () => {
    const doc = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
    const flatten = (value: unknown, prefix = ''): string[] =>
      typeof value === 'object' && value !== null && !Array.isArray(value)
        ? Object.entries(value).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k))
        : [prefix];
    for (const option of flatten(DEFAULTS)) expect(doc, option).toContain(`\`${option}\``);
    for (const env of Object.keys(ENV_OVERRIDES)) expect(doc, env).toContain(`\`${env}\``);
  });
});
