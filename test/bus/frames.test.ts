import { describe, expect, it } from 'vitest';
import { decodeFrames, encodeFrames, FrameError, MessageType } from '../../bus/index.ts';

describe('bus frames', () => {
  it('round-trips an INVOKE header and keeps the body buffer untouched', () => {
    const body = Buffer.from([0, 1, 2, 255, 254]);
    const header = {
      id: 'call-1', fn: { name: 'echo', version: 3 }, method: 'POST', path: '/a/b', query: 'x=1',
      headers: { 'content-type': 'application/octet-stream' }, deadlineMs: 123, traceparent: '', receivedAtMs: 100,
    };
    const frames = encodeFrames(MessageType.INVOKE, header, body);
    expect(frames).toHaveLength(3);
    expect(frames[2]).toBe(body);
    const decoded = decodeFrames(frames);
    expect(decoded.type).toBe(MessageType.INVOKE);
    expect(decoded.header).toEqual(header);
    expect(decoded.body).toBe(body);
  });

  it('uses an empty body when none is given', () => {
    const decoded = decodeFrames(encodeFrames(MessageType.CREDIT, { credits: 5 }));
    expect(decoded.body.length).toBe(0);
    expect(decoded.header).toEqual({ credits: 5 });
  });

  it('carries a RESULT\'s log rows as a fourth frame, untouched, and no other message\'s', () => {
    const result = { id: 'x1', status: 200, headers: {}, errorCode: '', errorMessage: '', start: 'warm' as const, containerId: 'c1', initUs: 0, runUs: 5, queueUs: 0 };
    const body = Buffer.from('ok');
    const logRows = Buffer.from('row\n');
    const frames = encodeFrames(MessageType.RESULT, result, body, logRows);
    expect(frames).toHaveLength(4);
    const decoded = decodeFrames(frames);
    expect(decoded).toMatchObject({ type: MessageType.RESULT, header: result });
    expect(decoded.body).toBe(body);
    expect(decoded.logRows).toBe(logRows);
    expect(decodeFrames(encodeFrames(MessageType.RESULT, result, body)).logRows).toBeUndefined();
    expect(() => encodeFrames(MessageType.CREDIT, { credits: 1 }, undefined, logRows)).toThrow('only a RESULT carries log rows, not CREDIT');
  });

  it.each([
    ['a wrong frame count', [Buffer.from([1]), Buffer.alloc(0)], 'expected 3 frames'],
    ['a fourth frame on anything but a RESULT', [...encodeFrames(MessageType.CREDIT, { credits: 1 }), Buffer.alloc(0)], 'expected 3 frames for CREDIT, got 4'],
    ['a type frame longer than one byte', [Buffer.from([1, 2]), Buffer.alloc(0), Buffer.alloc(0)], 'type frame must be 1 byte'],
    ['an unknown type', [Buffer.from([200]), encodeFrames(MessageType.CREDIT, { credits: 1 })[1], Buffer.alloc(0)], 'unknown message type 200'],
    ['a header that is not msgpack', [Buffer.from([2]), Buffer.from([0x82, 0xa1]), Buffer.alloc(0)], 'undecodable CREDIT header'],
    ['a header that is not a map', [Buffer.from([2]), Buffer.from([0x05]), Buffer.alloc(0)], 'CREDIT header must be a map'],
  ])('rejects %s with a FrameError', (_name, frames, message) => {
    expect(() => decodeFrames(frames)).toThrow(FrameError);
    expect(() => decodeFrames(frames)).toThrow(message);
  });
});
