import { afterEach, describe, expect, it, vi } from 'vitest';
import { CallAbort, linkSignals, raceAbort } from '../../executor/abortable.ts';

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('CallAbort', () => {
  it('runs its listeners once, in the order they came, with the first reason kept', () => {
    const abort = new CallAbort();
    const seen: string[] = [];
    abort.addEventListener('abort', () => seen.push(`a:${String(abort.reason)}`));
    abort.addEventListener('abort', () => seen.push(`b:${String(abort.reason)}`), { once: true });
    expect(abort.aborted).toBe(false);
    expect(abort.reason).toBeUndefined();
    abort.abort('first');
    abort.abort('second');
    expect(abort.aborted).toBe(true);
    expect(abort.reason).toBe('first');
    expect(seen).toEqual(['a:first', 'b:first']);
  });

  it('does not run a removed listener, one added twice runs once, one added after the abort never runs', () => {
    const abort = new CallAbort();
    const removed = vi.fn();
    const twice = vi.fn();
    abort.addEventListener('abort', removed);
    abort.addEventListener('abort', twice);
    abort.addEventListener('abort', twice);
    abort.removeEventListener('abort', removed);
    abort.removeEventListener('abort', () => {}); // never added: nothing happens
    abort.abort(new Error('gone'));
    const late = vi.fn();
    abort.addEventListener('abort', late);
    expect(removed).not.toHaveBeenCalled();
    expect(twice).toHaveBeenCalledTimes(1);
    expect(late).not.toHaveBeenCalled();
  });

  it('reports a listener that throws and still runs the others', () => {
    const reported: Array<() => void> = [];
    vi.stubGlobal('queueMicrotask', (task: () => void) => reported.push(task));
    const abort = new CallAbort();
    const after = vi.fn();
    abort.addEventListener('abort', () => {
      throw new Error('listener failed');
    });
    abort.addEventListener('abort', after);
    abort.abort('why');
    expect(after).toHaveBeenCalledTimes(1);
    expect(reported).toHaveLength(1);
    expect(() => reported[0]()).toThrow('listener failed');
  });
});

describe('raceAbort and linkSignals', () => {
  it('raceAbort rejects with the reason when a CallAbort aborts first, and unhooks when the promise wins', async () => {
    const abort = new CallAbort();
    const never = new Promise<string>(() => {});
    const raced = raceAbort(never, abort);
    abort.abort(new Error('deadline'));
    await expect(raced).rejects.toThrow('deadline');

    const other = new CallAbort();
    const added = vi.spyOn(other, 'addEventListener');
    const removed = vi.spyOn(other, 'removeEventListener');
    await expect(raceAbort(Promise.resolve('done'), other)).resolves.toBe('done');
    expect(added).toHaveBeenCalledTimes(1);
    expect(removed).toHaveBeenCalledWith('abort', added.mock.calls[0][1]); // raceAbort's listener is gone
    const listener = vi.fn();
    other.addEventListener('abort', listener);
    other.abort('late');
    expect(listener).toHaveBeenCalledTimes(1);
    await expect(raceAbort(Promise.resolve('x'), other)).rejects.toBe('late');
  });

  it('a linked signal aborts with the reason of whichever input aborts, a CallAbort or an AbortSignal', () => {
    const deadline = new CallAbort();
    const life = new AbortController();
    const linked = linkSignals(deadline, life.signal);
    life.abort('container gone');
    expect(linked.signal.aborted).toBe(true);
    expect(linked.signal.reason).toBe('container gone');

    const second = linkSignals(new CallAbort(), new AbortController().signal);
    const deadline2 = new CallAbort();
    const third = linkSignals(deadline2, life.signal); // life already aborted: linked at once
    expect(third.signal.reason).toBe('container gone');
    expect(second.signal.aborted).toBe(false);
  });

  it('dispose unhooks the linked signal from its inputs', () => {
    const deadline = new CallAbort();
    const life = new AbortController();
    const linked = linkSignals(deadline, life.signal);
    linked.dispose();
    deadline.abort('deadline');
    life.abort('gone');
    expect(linked.signal.aborted).toBe(false);
  });
});
