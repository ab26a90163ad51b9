/**
 * A WebSocket test client that records every frame and close, and waits for them with bounded
 * timeouts (never fixed sleeps).
 */
import { WebSocket } from 'ws';

export type Frame = { type: string; [key: string]: unknown };

export interface ConnectOptions {
  /** How the token travels. @default 'header' */
  via?: 'header' | 'protocol' | 'frame' | 'none';
  token?: string;
  headers?: Record<string, string>;
  protocols?: string[];
  /** Query parameters of the upgrade URL (`since`). */
  query?: Record<string, string>;
}

export class TestClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  closeCode: number | undefined;
  closeReason = '';
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;
  #waiters: Array<() => void> = [];

  constructor(url: string, options: ConnectOptions = {}) {
    const via = options.via ?? 'header';
    const headers = { ...options.headers };
    let protocols = options.protocols;
    if (options.token && via === 'header') headers.authorization = `Bearer ${options.token}`;
    if (options.token && via === 'protocol') protocols = ['chatgate.v1', `bearer.${options.token}`];
    const target = new URL(url);
    for (const [k, v] of Object.entries(options.query ?? {})) target.searchParams.set(k, v);
    this.ws = new WebSocket(target, protocols ?? [], { headers });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        this.#notify();
        resolve(code);
      });
    });
    this.ws.on('error', () => {});
    this.ws.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame);
      this.#notify();
    });
    if (options.token && via === 'frame') {
      void this.opened.then(() => this.send({ type: 'auth', token: options.token }));
    }
  }

  #notify(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Waits for the first frame (from `from` on) that matches; fails after `timeoutMs`. */
  async next(match: (f: Frame) => boolean, timeoutMs = 5000, from = 0): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.slice(from).find(match);
      if (found) return found;
      if (this.closeCode !== undefined) {
        throw new Error(`socket closed (${this.closeCode} ${this.closeReason}) while waiting; frames: ${JSON.stringify(this.frames)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a frame; frames: ${JSON.stringify(this.frames)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  type(type: string, timeoutMs?: number): Promise<Frame> {
    return this.next((f) => f.type === type, timeoutMs);
  }

  /** Sends a frame with `id` and waits for its `ack` or `error`. */
  async request(frame: Record<string, unknown> & { id: string | number }, timeoutMs?: number): Promise<Frame> {
    this.send(frame);
    return this.next((f) => (f.type === 'ack' || f.type === 'error') && f.id === frame.id, timeoutMs);
  }

  messages(): Frame[] {
    return this.frames.filter((f) => f.type === 'message');
  }

  /** Waits for the close and returns its code; fails after `timeoutMs`. */
  async closedWith(timeoutMs = 5000): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`socket not closed in ${timeoutMs} ms; frames: ${JSON.stringify(this.frames)}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
  }
}
