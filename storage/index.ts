/**
 * storage/: Skiff's log storage on ClickHouse (chDB embedded, or a server via CLICKHOUSE_URL).
 * This is the component's only public surface.
 */
export { openStorage, storageOptionsFromConfig } from './storage.ts';
export type {
  ContainerEventQuery,
  InvocationQuery,
  InvocationRecord,
  LogRow,
  Storage,
  StorageOptions,
  StorageStats,
  StoredFunction,
} from './types.ts';
