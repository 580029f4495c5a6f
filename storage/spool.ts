/**
 * The disk spool: encoded batches that ClickHouse could not take (unreachable, rejecting, or the
 * batch queue full) wait here as files until they are replayed, oldest first. A file is written
 * to a temporary name, fsync'd and renamed, so after a crash (even SIGKILL) the spool holds whole
 * batches only; leftover temporary files are removed at open. Each file carries a checksummed
 * header (spool-file.ts) so replay can tell a damaged one; a damaged file, or one ClickHouse
 * keeps refusing, is set aside under dead-letter/ with its reason, never deleted. The spool is
 * bounded by `maxBytes`: past it the oldest batches are deleted and their rows counted as dropped
 * (the one way storage loses data, reported in stats and the log). Poison rows go to
 * dead-letter.jsonl.
 */
import { appendFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { TABLE_NAMES, type TableName } from './schema.ts';
import { FRAMED_SUFFIX } from './spool-file.ts';

/** One spooled batch. */
export interface SpoolEntry {
  readonly file: string;
  readonly table: TableName;
  readonly batchId: string;
  readonly rows: number;
  readonly bytes: number;
}

interface DeadLetterBase {
  timeMs: number;
  table: TableName;
  batchId: string;
  /** Why: ClickHouse's error for a row, or what is wrong with a batch file. */
  error: string;
}

/**
 * What the dead-letter file records: a row ClickHouse refused (or the encoder could not read),
 * with its error; or a whole spooled batch set aside (damaged, or refused on every replay), whose
 * file was moved to `file` (relative to the spool directory).
 */
export type DeadLetter =
  | (DeadLetterBase & {
      /** The row as it was sent (one line of the batch: TabSeparated, or JSON for older batches). */
      row: string;
    })
  | (DeadLetterBase & { file: string; rows: number });

/** The dead-letter file's name inside the spool directory: one JSON DeadLetter per line. */
export const DEAD_LETTER_FILE = 'dead-letter.jsonl';
/** Where set-aside batch files go, inside the spool directory. */
export const DEAD_LETTER_DIR = 'dead-letter';
const TEMP_SUFFIX = '.tmp';
// <14-digit ms>-<8-digit seq>-<batch id>.<table>.<rows>.batch (or .jsonl.gz, written by earlier
// versions): names sort oldest first.
const NAME = /^(\d{14}-\d{8})-([A-Za-z0-9_-]+)\.([a-z_]+)\.(\d+)\.(batch|jsonl\.gz)$/;

/** Makes a rename durable (async: an fsync may take long, and never on the event loop). */
async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class Spool {
  readonly #dir: string;
  readonly #maxBytes: number;
  readonly #onDrop: (entry: SpoolEntry) => void;
  /** Per table, oldest first. */
  readonly #entries = new Map<TableName, SpoolEntry[]>(TABLE_NAMES.map((t) => [t, []]));
  #bytes = 0;
  #seq = 0;
  #deadLetters = 0;

  private constructor(dir: string, maxBytes: number, onDrop: (entry: SpoolEntry) => void) {
    this.#dir = dir;
    this.#maxBytes = maxBytes;
    this.#onDrop = onDrop;
  }

  /** Opens (creating) the spool directory, removes half-written files and lists the batches left by earlier runs. */
  static async open(dir: string, maxBytes: number, onDrop: (entry: SpoolEntry) => void): Promise<Spool> {
    await mkdir(dir, { recursive: true });
    const spool = new Spool(dir, maxBytes, onDrop);
    for (const name of (await readdir(dir)).sort()) {
      if (name.endsWith(TEMP_SUFFIX)) {
        await rm(path.join(dir, name), { force: true });
        continue;
      }
      const match = NAME.exec(name);
      if (!match || !(TABLE_NAMES as string[]).includes(match[3])) continue;
      const { size } = await stat(path.join(dir, name));
      spool.#add({ file: name, table: match[3] as TableName, batchId: match[2], rows: Number(match[4]), bytes: size });
    }
    return spool;
  }

  get dir(): string {
    return this.#dir;
  }

  /** Bytes of batch files on disk. */
  get bytes(): number {
    return this.#bytes;
  }

  get deadLetters(): number {
    return this.#deadLetters;
  }

  /** Batches waiting, over all tables or for one. */
  count(table?: TableName): number {
    if (table) return this.#entries.get(table)!.length;
    let n = 0;
    for (const list of this.#entries.values()) n += list.length;
    return n;
  }

  /** Rows waiting in the spool, over all tables or for one. */
  rows(table?: TableName): number {
    let n = 0;
    for (const [t, list] of this.#entries) if (!table || t === table) for (const e of list) n += e.rows;
    return n;
  }

  /** The oldest batch of `table`, or undefined. */
  oldest(table: TableName): SpoolEntry | undefined {
    return this.#entries.get(table)![0];
  }

  /** Writes a batch's file (spool-file.ts frameSpoolFile) durably (fsync'd before it counts), then trims the spool to its bound. */
  async put(table: TableName, batchId: string, rows: number, body: Uint8Array): Promise<SpoolEntry> {
    const stamp = `${String(Date.now()).padStart(14, '0')}-${String(++this.#seq % 1e8).padStart(8, '0')}`;
    const file = `${stamp}-${batchId}.${table}.${rows}${FRAMED_SUFFIX}`;
    const temp = path.join(this.#dir, file + TEMP_SUFFIX);
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(body);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path.join(this.#dir, file));
    await fsyncDir(this.#dir);
    const entry: SpoolEntry = { file, table, batchId, rows, bytes: body.byteLength };
    this.#add(entry);
    await this.#trim(entry);
    return entry;
  }

  /** The bytes of a spooled batch's file (checked by spool-file.ts openSpoolFile). */
  read(entry: SpoolEntry): Promise<Buffer> {
    return readFile(path.join(this.#dir, entry.file));
  }

  /** Deletes a batch once it is in ClickHouse (or dead-lettered). */
  async remove(entry: SpoolEntry): Promise<void> {
    if (!this.#forget(entry)) return;
    await rm(path.join(this.#dir, entry.file), { force: true });
  }

  /** Drops an entry from the index; false if it was not there. */
  #forget(entry: SpoolEntry): boolean {
    const list = this.#entries.get(entry.table)!;
    const at = list.indexOf(entry);
    if (at < 0) return false;
    list.splice(at, 1);
    this.#bytes -= entry.bytes;
    return true;
  }

  /** Appends a refused row (or a set-aside batch) with its error to the dead-letter file. */
  async deadLetter(letter: DeadLetter): Promise<void> {
    await appendFile(path.join(this.#dir, DEAD_LETTER_FILE), `${JSON.stringify(letter)}\n`);
    this.#deadLetters += 1;
  }

  /**
   * Moves a batch that cannot be replayed (damaged, or refused on every replay) to dead-letter/
   * and records why in the dead-letter file; it leaves the spool but keeps its bytes for an
   * operator; resolves to where it went, relative to the spool directory. If the move fails the
   * batch stays in the spool and the error is thrown.
   */
  async setAside(entry: SpoolEntry, reason: string): Promise<string> {
    const dir = path.join(this.#dir, DEAD_LETTER_DIR);
    await mkdir(dir, { recursive: true });
    await rename(path.join(this.#dir, entry.file), path.join(dir, entry.file));
    await fsyncDir(this.#dir);
    this.#forget(entry);
    const file = path.join(DEAD_LETTER_DIR, entry.file);
    await this.deadLetter({ timeMs: Date.now(), table: entry.table, batchId: entry.batchId, error: reason, file, rows: entry.rows });
    return file;
  }

  #add(entry: SpoolEntry): void {
    const list = this.#entries.get(entry.table)!;
    list.push(entry);
    if (list.length > 1 && list[list.length - 2].file > entry.file) list.sort((a, b) => (a.file < b.file ? -1 : 1));
    this.#bytes += entry.bytes;
  }

  /** Deletes the oldest batches (any table) until the spool fits, never the one just written. */
  async #trim(keep: SpoolEntry): Promise<void> {
    while (this.#bytes > this.#maxBytes) {
      let oldest: SpoolEntry | undefined;
      for (const list of this.#entries.values()) {
        const head = list.find((e) => e !== keep);
        if (head && (!oldest || head.file < oldest.file)) oldest = head;
      }
      if (!oldest) return;
      await this.remove(oldest);
      this.#onDrop(oldest);
    }
  }
}
