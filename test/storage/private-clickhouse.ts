/**
 * A ClickHouse server of a test's own: Debian's clickhouse-server binary on free loopback ports
 * with its own data directory and config, so a test may kill and restart it without touching
 * the shared server on 8123 that other tests (and other people's runs) use. Several of them make
 * a cluster (remote_servers, macros, distributed DDL) around a private ZooKeeper (Debian's
 * zookeeper package) on a free loopback port with its own data directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';

const USERS_CONFIG = '/etc/clickhouse-server/users.xml';
const START_TIMEOUT_MS = 60_000;

/** A free loopback TCP port (nothing listens on it when this resolves). */
export async function freePort(): Promise<number> {
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
  /** The native protocol port (what remote_servers names). */
  readonly tcpPort: number;
  /** Starts (or restarts) the server and resolves once /ping answers. */
  start(): Promise<void>;
  /** Kills the server (SIGKILL: a crash, not a clean stop) and waits for it to exit. */
  kill(): Promise<void>;
  /** Stops the server and deletes its data directory. */
  destroy(): Promise<void>;
}

/** What a server of a cluster needs besides its own ports. */
export interface ClusterMember {
  /** The <remote_servers> element, e.g. `<skiff_test>…</skiff_test>`. */
  remoteServers: string;
  /** This server's macros, e.g. { shard: '1', replica: 'r1' }. */
  macros: Record<string, string>;
  /** The ZooKeeper it coordinates through (replication and ON CLUSTER DDL). */
  zooKeeperPort: number;
  /** Its ports, chosen beforehand so every member's remote_servers can name them. */
  httpPort: number;
  tcpPort: number;
  /** Profile settings, e.g. { insert_distributed_sync: '1' }. */
  profile?: Record<string, string>;
}

function clusterConfig(member: ClusterMember, dir: string, interserverPort: number): string {
  const macros = Object.entries(member.macros).map(([k, v]) => `<${k}>${v}</${k}>`).join('');
  return `  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>${interserverPort}</interserver_http_port>
  <zookeeper><node><host>127.0.0.1</host><port>${member.zooKeeperPort}</port></node></zookeeper>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <macros>${macros}</macros>
  <remote_servers>${member.remoteServers}</remote_servers>
  <users_config>${dir}/users.xml</users_config>
`;
}

/** A users.xml: the default user with the default profile plus `settings`. */
function usersConfig(settings: Record<string, string>): string {
  const profile = Object.entries(settings).map(([k, v]) => `<${k}>${v}</${k}>`).join('');
  return `<yandex>
  <profiles><default>${profile}</default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`;
}

/** Prepares a private server (not started yet); with `member`, one server of a cluster. */
export async function privateClickHouse(member?: ClusterMember): Promise<PrivateClickHouse> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-clickhouse-'));
  const [httpPort, tcpPort] = member ? [member.httpPort, member.tcpPort] : [await freePort(), await freePort()];
  const data = path.join(dir, 'data');
  if (member) await writeFile(path.join(dir, 'users.xml'), usersConfig(member.profile ?? {}));
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
${member ? clusterConfig(member, dir, await freePort()) : `  <users_config>${USERS_CONFIG}</users_config>\n`}  <default_profile>default</default_profile>
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
    tcpPort,
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

export interface PrivateZooKeeper {
  readonly port: number;
  /** Stops it and deletes its data directory. */
  destroy(): Promise<void>;
}

/** Debian's zookeeper package puts its jar here (apt-get install zookeeper). */
const ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar';

/**
 * Asks ZooKeeper's `srvr` four-letter word; true once it reports a mode, i.e. serves requests
 * (`ruok` answers before that, and ClickHouse 18.16 crashes on a session refused while ZooKeeper
 * is still starting).
 */
async function zooKeeperServing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let answer = '';
    socket.setTimeout(1000, () => socket.destroy());
    socket.on('connect', () => socket.write('srvr'));
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('close', () => resolve(/^Mode: standalone$/m.test(answer)));
    socket.on('error', () => resolve(false));
  });
}

/** Starts a standalone ZooKeeper on a free loopback port with its own data directory. */
export async function privateZooKeeper(): Promise<PrivateZooKeeper> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skiff-zookeeper-'));
  const port = await freePort();
  const config = path.join(dir, 'zoo.cfg');
  await writeFile(
    config,
    [`dataDir=${dir}/data`, `clientPort=${port}`, 'clientPortAddress=127.0.0.1', 'tickTime=2000', 'admin.enableServer=false', '4lw.commands.whitelist=srvr', ''].join('\n'),
  );
  const child = spawn('java', ['-Xmx256m', '-cp', ZOOKEEPER_JAR, 'org.apache.zookeeper.server.ZooKeeperServerMain', config], { stdio: 'ignore' });
  const destroy = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await zooKeeperServing(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await destroy();
      throw new Error(`ZooKeeper did not serve on 127.0.0.1:${port} (is the zookeeper package installed? ${ZOOKEEPER_JAR})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { port, destroy };
}
