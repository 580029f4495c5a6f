/**
 * Where an executor keeps its files: <dataDir>/executor/<nodeId>/bundles (extracted code, by
 * hash) and .../iofs (one directory per container, holding its unix socket). Unix socket paths
 * are limited to 107 bytes, so a too-deep iofs root falls back to a short one under /tmp.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';

/** Longest socket path the kernel takes (sun_path is 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;
/** Room a container's socket needs below the iofs root: /<8 hex>/skiff-<12 hex>.sock and margin. */
const SOCKET_TAIL_BYTES = 48;

export interface ExecutorPaths {
  root: string;
  bundles: string;
  iofs: string;
}

/** A node id made safe as one path segment. */
export function safeSegment(value: string): string {
  return value.replace(/[^A-Za-z0-9_.-]/g, '_') || '_';
}

export function executorPaths(dataDir: string, nodeId: string): ExecutorPaths {
  const root = path.join(path.resolve(dataDir), 'executor', safeSegment(nodeId));
  let iofs = path.join(root, 'iofs');
  if (Buffer.byteLength(iofs) + SOCKET_TAIL_BYTES > MAX_SOCKET_PATH) {
    const digest = createHash('sha256').update(iofs).digest('hex').slice(0, 12);
    iofs = path.join(os.tmpdir(), `skiff-iofs-${digest}`);
  }
  return { root, bundles: path.join(root, 'bundles'), iofs };
}
