/**
 * The CLI's HTTP client for a running gateway.
 */
import { Agent, request } from 'undici';

export interface GatewayResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Talks to one gateway; `insecure` accepts self-signed certificates (for `skiff up --tls`). */
export class GatewayClient {
  readonly baseUrl: string;
  readonly #dispatcher: Agent;

  constructor(baseUrl: string, insecure = false) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.#dispatcher = new Agent({ connect: { rejectUnauthorized: !insecure } });
  }

  async call(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<GatewayResponse> {
    const res = await request(`${this.baseUrl}${path}`, {
      method: method as 'GET',
      body,
      headers,
      dispatcher: this.#dispatcher,
    });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    const flat: Record<string, string> = {};
    for (const [name, value] of Object.entries(res.headers)) {
      if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    return { status: res.statusCode, headers: flat, body: bytes };
  }

  /** Calls and parses JSON; throws with the gateway's error code and message on a non-2xx. */
  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.call(method, path, body === undefined ? undefined : JSON.stringify(body), body === undefined ? {} : { 'content-type': 'application/json' });
    const text = res.body.toString('utf8');
    const parsed: unknown = text === '' ? undefined : JSON.parse(text);
    if (res.status >= 300) {
      const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new Error(`${res.status} ${error?.code ?? ''}: ${error?.message ?? text}`);
    }
    return parsed as T;
  }

  close(): Promise<void> {
    return this.#dispatcher.close();
  }
}
