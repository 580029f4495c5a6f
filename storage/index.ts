/**
 * storage/: Skiff's log storage on ClickHouse (chDB embedded, or a server via CLICKHOUSE_URL).
 * This is the component's only public surface.
 */
export { openStorage, storageOptionsFromConfig } from './storage.ts';
export { DEAD_LETTER_FILE, type DeadLetter } from './spool.ts';
export { MAX_STORED_LOG_LINE_CHARS } from './rows.ts';
export type {
  ContainerEventQuery,
  FunctionStats,
  InvocationPage,
  InvocationQuery,
  InvocationRecord,
  LogRow,
  Percentiles,
  Storage,
  StorageCluster,
  StorageOptions,
  StorageStats,
  StoredFunction,
  TableStats,
} from './types.ts';
