import { describe, expect, it } from 'vitest';
import { ReadyQueues } from '../../gateway/async/ready-queues.ts';

function drain(queues: ReadyQueues): string[] {
  const out: string[] = [];
  for (let id = queues.next(); id !== undefined; id = queues.next()) out.push(id);
  return out;
}

describe("the async dispatcher's ready queues", () => {
  it('serves each function in arrival order, the functions in turn', () => {
    const queues = new ReadyQueues(() => {});
    for (const id of ['a1', 'a2', 'a3']) queues.enqueue(id, 'a', 0);
    for (const id of ['b1', 'b2']) queues.enqueue(id, 'b', 0);
    expect(drain(queues)).toEqual(['a1', 'b1', 'a2', 'b2', 'a3']);
    expect(queues.hasReady).toBe(false);
  });

  it('puts a call whose turn was lost (a redelivery) ahead of the calls of its function already waiting', () => {
    const queues = new ReadyQueues(() => {});
    for (const id of ['a1', 'a2', 'a3']) queues.enqueue(id, 'a', 0);
    queues.enqueue('b1', 'b', 0);
    queues.enqueue('lost', 'a', 0, true);
    expect(drain(queues)).toEqual(['lost', 'b1', 'a1', 'a2', 'a3']);
  });

  it('keeps a delayed call until its time, then puts it ahead when asked', async () => {
    let ready!: () => void;
    const becameReady = new Promise<void>((resolve) => (ready = resolve));
    const queues = new ReadyQueues(() => ready());
    queues.enqueue('lost', 'a', Date.now() + 20, true);
    for (const id of ['a1', 'a2']) queues.enqueue(id, 'a', 0);
    expect(queues.next()).toBe('a1');
    await becameReady;
    expect(drain(queues)).toEqual(['lost', 'a2']);
  });
});
