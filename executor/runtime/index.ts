/** The function runtime: the image the executor starts and the contract it speaks. */
export { ensureRuntimeImage, listSharedLibraries, runtimeHash, BOOTSTRAP_SOURCE } from './build-image.ts';
export type { EnsureRuntimeImageOptions } from './build-image.ts';
export { LISTENER_FILE, RUNTIME_LATEST_TAG, RUNTIME_PATHS, RUNTIME_REPOSITORY, RUNTIME_USER, runtimeEnv } from './contract.ts';
