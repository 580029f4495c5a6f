/**
 * CURVE security for the bus: encryption of every frame (ZeroMQ's built-in CurveZMQ) and, on the
 * gateway, authentication of executors by public key through a ZAP handler (without one, any
 * client that knows the server key could connect).
 */
import { curveKeyPair, Reply } from 'zeromq';

/** A z85-encoded CURVE key pair, as `skiff keygen` prints it. */
export interface CurveKeyPair {
  publicKey: string;
  secretKey: string;
}

/** Gateway side: its own key pair and the executors' public keys it accepts. */
export interface CurveServerOptions extends CurveKeyPair {
  /** Empty: any client that knows the server's public key may connect (encryption only). */
  allowedClientKeys: readonly string[];
}

/** Executor side: its own key pair and the gateway's public key. */
export interface CurveClientOptions extends CurveKeyPair {
  serverPublicKey: string;
}

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/** True for a 40-character z85 key. */
export function isCurveKey(value: string): boolean {
  return Z85_KEY.test(value);
}

/** A fresh key pair (libsodium inside libzmq). */
export function generateCurveKeyPair(): CurveKeyPair {
  return curveKeyPair();
}

const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';
const ZAP_VERSION = '1.0';
/**
 * How long start() keeps trying to bind the ZAP endpoint while it is taken: libzmq releases a
 * closed socket's endpoint asynchronously (its reaper thread), so a handler started right after
 * another closed can find the endpoint still held for a moment.
 */
const ZAP_BIND_RETRY_MS = 2_000;
const ZAP_BIND_RETRY_STEP_MS = 10;
/** The Z85 alphabet, to turn the 32-byte binary key of a ZAP request back into its z85 text. */
const Z85_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

/** Encodes 32 bytes as z85 (40 characters). */
export function z85Encode(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let value = ((bytes[i] << 24) >>> 0) + (bytes[i + 1] << 16) + (bytes[i + 2] << 8) + bytes[i + 3];
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(Z85_CHARS[value % 85]);
      value = Math.floor(value / 85);
    }
    out += chunk.join('');
  }
  return out;
}

/**
 * The process's ZAP handler: answers libzmq's authentication requests for CURVE connections,
 * accepting the allowed client keys. One per process (libzmq looks for a single ZAP endpoint).
 */
export class ZapAuthenticator {
  readonly #socket = new Reply();
  readonly #allowed: ReadonlySet<string>;
  #closed = false;
  /** Connections refused, for logs and tests. */
  rejected = 0;

  private constructor(allowed: readonly string[]) {
    this.#allowed = new Set(allowed);
  }

  /** Binds the ZAP endpoint; must run before the CURVE server socket binds. */
  static async start(allowedClientKeys: readonly string[]): Promise<ZapAuthenticator> {
    const zap = new ZapAuthenticator(allowedClientKeys);
    zap.#socket.linger = 0;
    const deadline = Date.now() + ZAP_BIND_RETRY_MS;
    for (;;) {
      try {
        await zap.#socket.bind(ZAP_ENDPOINT);
        break;
      } catch (err) {
        // Taken for longer than a release takes: another live handler in this process.
        if ((err as { code?: unknown }).code !== 'EADDRINUSE' || Date.now() >= deadline) {
          zap.close();
          throw err;
        }
        await new Promise((resolve) => setTimeout(resolve, ZAP_BIND_RETRY_STEP_MS));
      }
    }
    void zap.#serve();
    return zap;
  }

  async #serve(): Promise<void> {
    try {
      for await (const frames of this.#socket) {
        const [version, requestId, , , , mechanism, clientKey] = frames;
        const key = mechanism?.toString() === 'CURVE' && clientKey?.length === 32 ? z85Encode(clientKey) : '';
        const ok = key !== '' && (this.#allowed.size === 0 || this.#allowed.has(key));
        if (!ok) this.rejected++;
        await this.#socket.send([
          version?.toString() ?? ZAP_VERSION,
          requestId ?? Buffer.alloc(0),
          ok ? '200' : '400',
          ok ? 'OK' : 'client key not allowed',
          ok ? key : '',
          Buffer.alloc(0),
        ]);
      }
    } catch (err) {
      if (!this.#closed) throw err;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
  }
}
