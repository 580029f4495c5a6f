/**
 * The process logger: pino, JSON lines to stderr so stdout stays for what a person asked for.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Creates a logger named for the component that owns it. */
export function createLogger(name: string, level: string): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: false }));
}
