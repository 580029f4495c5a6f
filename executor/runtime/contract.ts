/**
 * The container contract between the executor and the runtime image (Fn `http-stream`): where
 * things live inside the image and the environment the bootstrap reads. build-image.ts bakes these
 * paths into the image; the executor uses them to create containers.
 */
import path from 'node:path';

export const RUNTIME_REPOSITORY = 'skiff/runtime-node20';
export const RUNTIME_LATEST_TAG = `${RUNTIME_REPOSITORY}:latest`;

/** Paths inside the image. */
export const RUNTIME_PATHS = {
  node: '/usr/local/bin/node',
  bootstrap: '/skiff/bootstrap.mjs',
  /** The function folder: bind-mount the unpacked bundle here, read-only. */
  functionDir: '/function',
  /** Bind-mount a per-container host directory (mode 0777) here; the listener socket appears in it. */
  iofsDir: '/tmp/iofs',
  listener: '/tmp/iofs/lsnr.sock',
} as const;

/** File name of the listener inside the iofs directory: wait for `<host iofs dir>/lsnr.sock`. */
export const LISTENER_FILE = path.posix.basename(RUNTIME_PATHS.listener);

/** The non-root user the image runs as. */
export const RUNTIME_USER = { name: 'skiff', uid: 1000, gid: 1000 } as const;

/** Environment for a function container; `handler` is relative to the function folder. */
export function runtimeEnv(functionName: string, handler: string): string[] {
  return [
    `FN_LISTENER=unix:${RUNTIME_PATHS.listener}`,
    'FN_FORMAT=http-stream',
    `SKIFF_HANDLER=${path.posix.join(RUNTIME_PATHS.functionDir, handler)}`,
    `SKIFF_FUNCTION_NAME=${functionName}`,
    // What @fnproject/fdk's ctx.fnName reads.
    `FN_FN_NAME=${functionName}`,
  ];
}
