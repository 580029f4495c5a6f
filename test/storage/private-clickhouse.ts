/**
 * A ClickHouse server of a test's own: Debian's clickhouse-server binary on free loopback ports
 * with its own data directory and config, so a test may kill and restart it without touching
 * the shared server on 8123 that other tests (and other people's runs) use.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';

const USERS_CONFIG = '/etc/clickhouse-server/users.xml';
const START_TIMEOUT_MS = 60_000;

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

export interface PrivateClickHouse {
  readonly url: string;
  /** Starts (or restarts) the server and resolves once /ping answers. */
  start(): Promise<void>;
  /** Kills the server (SIGKILL: a crash, not a clean stop) and waits for it to exit. */
  kill(): Promise<void>;
  /** Stops the server and deletes its data directory. */
  destroy(): Promise<void>;
}

/** Prepares a private server (not started yet). */
export async function privateClickHouse(): Promise<PrivateClickHouse> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-clickhouse-'));
  const [httpPort, tcpPort] = [await freePort(), await freePort()];
  const data = path.join(dir, 'data');
  await writeFile(
    path.join(dir, 'config.xml'),
    `<yandex>
  <logger><level>warning</level><log>${dir}/server.log</log><errorlog>${dir}/server.err.log</errorlog><console>0</console></logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>${data}/</path>
  <tmp_path>${data}/tmp/</tmp_path>
  <user_files_path>${data}/user_files/</user_files_path>
  <format_schema_path>${data}/format_schemas/</format_schema_path>
  <users_config>${USERS_CONFIG}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
`,
  );
  const url = `http://127.0.0.1:${httpPort}`;
  let child: ChildProcess | undefined;

  const ping = async (): Promise<boolean> => {
    try {
      return (await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) })).ok;
    } catch {
      return false;
    }
  };

  const kill = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, 'exit');
    running.kill('SIGKILL');
    await exited;
  };

  return {
    url,
    async start() {
      if (child) return;
      const started = spawn('clickhouse-server', [`--config-file=${path.join(dir, 'config.xml')}`], { stdio: 'ignore' });
      child = started;
      const deadline = Date.now() + START_TIMEOUT_MS;
      while (!(await ping())) {
        if (started.exitCode !== null) throw new Error(`clickhouse-server exited (${started.exitCode}); see ${dir}/server.err.log`);
        if (Date.now() > deadline) throw new Error(`clickhouse-server did not answer ${url}/ping within ${START_TIMEOUT_MS} ms`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    kill,
    async destroy() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
