/**
 * What every benchmark result records about where it ran: the machine and the commit.
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  docker: string;
}

export interface CommitInfo {
  commit: string;
  /** True when the work tree had uncommitted changes. */
  dirty: boolean;
}

function run(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

export function describeMachine(): MachineInfo {
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    docker: run('docker', ['version', '--format', '{{.Server.Version}}']),
  };
}

export function describeCommit(): CommitInfo {
  return { commit: run('git', ['rev-parse', 'HEAD']), dirty: run('git', ['status', '--porcelain']) !== '' };
}
