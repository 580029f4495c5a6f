/**
 * Frame codec: `[type (1 byte), header (msgpack), body (raw)]`, and on a RESULT optionally a
 * fourth, its log rows (raw). Hot path: the body Buffer is passed through untouched, only the
 * small header is (de)serialized.
 */
import { Packr } from 'msgpackr';
import { MESSAGE_TYPE_NAMES, MessageType, type BusMessage, type HeaderOf } from './messages.ts';

const packr = new Packr({ useRecords: false, moreTypes: false });
const EMPTY = Buffer.alloc(0);
const TYPE_BYTES: Buffer[] = Array.from({ length: 256 }, (_, i) => Buffer.from([i]));

/** A frame that could not be decoded; the bus drops it and counts it. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

/** Encodes one message into its three frames; a RESULT may carry log rows as a fourth (BusMessage.logRows). */
export function encodeFrames<T extends MessageType>(type: T, header: HeaderOf[T], body: Buffer = EMPTY, logRows?: Buffer): Buffer[] {
  if (logRows !== undefined && type !== MessageType.RESULT) throw new TypeError(`only a RESULT carries log rows, not ${MESSAGE_TYPE_NAMES[type]}`);
  const pack = packr.pack(header);
  return logRows === undefined ? [TYPE_BYTES[type], pack, body] : [TYPE_BYTES[type], pack, body, logRows];
}

/** Decodes the three frames of a message (without any routing id); throws FrameError on garbage. */
export function decodeFrames(frames: readonly Buffer[]): BusMessage {
  if (frames.length !== 3 && frames.length !== 4) throw new FrameError(`expected 3 frames, got ${frames.length}`);
  const [typeFrame, headerFrame, body, logRows] = frames;
  if (typeFrame.length !== 1) throw new FrameError(`type frame must be 1 byte, got ${typeFrame.length}`);
  const type = typeFrame[0] as MessageType;
  if (!(type in MESSAGE_TYPE_NAMES)) throw new FrameError(`unknown message type ${type}`);
  if (logRows !== undefined && type !== MessageType.RESULT) throw new FrameError(`expected 3 frames for ${MESSAGE_TYPE_NAMES[type]}, got 4`);
  let header: unknown;
  try {
    header = packr.unpack(headerFrame);
  } catch (err) {
    throw new FrameError(`undecodable ${MESSAGE_TYPE_NAMES[type]} header: ${(err as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new FrameError(`${MESSAGE_TYPE_NAMES[type]} header must be a map`);
  }
  return (logRows === undefined ? { type, header, body } : { type, header, body, logRows }) as BusMessage;
}
