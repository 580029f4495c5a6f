import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Journal, type JournalEntry } from '../../gateway/async/journal.ts';

function entry(id: string, over: Partial<JournalEntry> = {}): JournalEntry {
  return {
    id,
    functionName: 'fn',
    method: 'POST',
    path: '/',
    query: '',
    headers: { 'content-type': 'text/plain' },
    traceparent: '',
    receivedAtMs: 1,
    requestBytes: 5,
    idempotencyKey: '',
    state: 'queued',
    attempts: 0,
    failures: 0,
    redeliveries: 0,
    replays: 0,
    nextAttemptAtMs: 0,
    finishedAtMs: 0,
    history: [],
    result: null,
    callback: null,
    ...over,
  };
}

const tempDir = () => mkdtempSync(path.join(os.tmpdir(), 'skiff-journal-'));

describe('Journal', () => {
  it('keeps accepted entries, their bodies and idempotency keys across a reopen', async () => {
    const dir = tempDir();
    const journal = Journal.open({ dir, maxEntries: 10, maxBytes: 1 << 20 });
    await journal.accept(entry('a', { idempotencyKey: 'k1' }), Buffer.from('hello'));
    await journal.accept(entry('b'), Buffer.from([0, 1, 2, 255]));
    await journal.close();
    const reopened = Journal.open({ dir, maxEntries: 10, maxBytes: 1 << 20 });
    expect([...reopened.entries()].map((e) => e.id)).toEqual(['a', 'b']);
    expect(reopened.body('a').toString()).toBe('hello');
    expect([...reopened.body('b')]).toEqual([0, 1, 2, 255]);
    expect(reopened.idempotent('fn', 'k1')).toBe('a');
    expect(reopened.idempotent('other', 'k1')).toBeUndefined();
    expect(reopened.size.entries).toBe(2);
    await reopened.close();
  });

  it('answers JOURNAL_FULL past maxEntries or maxBytes, counting accepts still being written', async () => {
    const journal = Journal.open({ dir: tempDir(), maxEntries: 2, maxBytes: 1 << 20 });
    const first = journal.accept(entry('a'), Buffer.from('x'));
    const second = journal.accept(entry('b'), Buffer.from('x'));
    await expect(journal.accept(entry('c'), Buffer.from('x'))).rejects.toMatchObject({ code: 'JOURNAL_FULL', statusCode: 507 });
    await Promise.all([first, second]);
    await journal.remove(['a']);
    await journal.accept(entry('c'), Buffer.from('x'));
    const small = Journal.open({ dir: tempDir(), maxEntries: 100, maxBytes: 2000 });
    await expect(small.accept(entry('big'), Buffer.alloc(4000))).rejects.toMatchObject({ code: 'JOURNAL_FULL' });
    await journal.close();
    await small.close();
  });

  it('commits updates with full results, drops them, and removes entries with their keys', async () => {
    const journal = Journal.open({ dir: tempDir(), maxEntries: 10, maxBytes: 1 << 20 });
    await journal.accept(entry('a', { idempotencyKey: 'k' }), Buffer.from('body'));
    const done = entry('a', { idempotencyKey: 'k', state: 'succeeded', attempts: 1, finishedAtMs: 5 });
    await journal.commit([{ entry: done, fullResult: Buffer.alloc(1000, 1) }]);
    expect(journal.get('a')).toMatchObject({ state: 'succeeded', attempts: 1 });
    expect(journal.fullResult('a')?.length).toBe(1000);
    const withResult = journal.size.bytes;
    await journal.commit([{ entry: done, fullResult: null }]);
    expect(journal.fullResult('a')).toBeUndefined();
    expect(journal.size.bytes).toBe(withResult - 1000);
    await journal.remove(['a']);
    expect(journal.get('a')).toBeUndefined();
    expect(journal.idempotent('fn', 'k')).toBeUndefined();
    expect(journal.size).toEqual({ entries: 0, bytes: 0 });
    await journal.close();
  });
});
