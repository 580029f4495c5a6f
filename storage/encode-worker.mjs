// Piscina entry for the batch encoder. Worker threads of vitest (and plain node) may not have tsx
// registered, so load the TypeScript module through tsx's scoped tsImport.
import { tsImport } from 'tsx/esm/api';

const worker = await tsImport('./encode-worker.ts', import.meta.url);

export default worker.default;
