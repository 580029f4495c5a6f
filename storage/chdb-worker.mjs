// Piscina entry for the chDB worker. Worker threads of vitest (and plain node) may not have tsx
// registered, so load the TypeScript module through tsx's scoped tsImport.
import { tsImport } from 'tsx/esm/api';

const worker = await tsImport('./chdb-worker.ts', import.meta.url);

export default worker.default;
