/**
 * What a k6 script did under the adapter: every request with its answer, every check's passes
 * and fails, every custom metric it declared and fed, and the response callback it set.
 */

export interface RecordedRequest {
  method: string;
  url: string;
  status: number;
  /** The Skiff error code of a JSON error answer ('' otherwise). */
  errorCode: string;
  /** The k6 `name` tag, when the script set one. */
  name: string;
}

export interface AdapterState {
  requests: RecordedRequest[];
  checks: Record<string, { passes: number; fails: number }>;
  metrics: Record<string, { type: string; values: number }>;
  expectedStatuses: number[] | null;
  failures: string[];
}

/** The one state object of this process (the adapter runs one script per process). */
export const state: AdapterState = { requests: [], checks: {}, metrics: {}, expectedStatuses: null, failures: [] };
