/**
 * Server-sent event streams of the admin server, bounded: at most `maxStreams` at once (more get
 * 503), at most `maxBufferedBytes` waiting in one stream's socket (past that the stream gets an
 * `overflow` event and is ended: the page says so and the user picks again), and one timer for
 * all of them, running only while a stream is open. A ticker (the counts) is computed once per
 * tick for every stream that follows it and sent only when it changed.
 */
import type { ServerResponse } from 'node:http';

export interface SseHubOptions {
  /** @default 64 */
  maxStreams?: number;
  /** Bytes one stream may have waiting before it is ended. @default 262144 */
  maxBufferedBytes?: number;
  /** How often tickers are computed and streams checked. @default 500 */
  tickMs?: number;
  /** A comment line keeps idle streams open through proxies. @default 15000 */
  keepAliveMs?: number;
}

export class SseStream {
  readonly #res: ServerResponse;
  readonly #maxBufferedBytes: number;
  readonly #onClose: Array<() => void> = [];
  closed = false;
  /** Checked each tick: when false, `endEvent` is sent and the stream ends. */
  alive: { check: () => boolean; endEvent: string } | undefined;

  constructor(res: ServerResponse, maxBufferedBytes: number) {
    this.#res = res;
    this.#maxBufferedBytes = maxBufferedBytes;
  }

  send(event: string, data: unknown): void {
    if (this.closed) return;
    let text: string;
    try {
      text = JSON.stringify(data);
    } catch {
      // An observation with a value JSON cannot hold (a BigInt, a cycle): its type is still useful.
      text = JSON.stringify({ unserializable: true, type: (data as { kind?: unknown })?.kind ?? null });
    }
    this.write(`event: ${event}\ndata: ${text}\n\n`);
  }

  write(chunk: string): void {
    if (this.closed) return;
    if (this.#res.writableLength > this.#maxBufferedBytes) {
      this.#res.write('event: overflow\ndata: {}\n\n');
      this.close();
      return;
    }
    this.#res.write(chunk);
  }

  onClose(fn: () => void): void {
    this.#onClose.push(fn);
  }

  whileAlive(check: () => boolean, endEvent: string): void {
    this.alive = { check, endEvent };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fn of this.#onClose.splice(0)) fn();
    this.#res.end();
  }
}

interface Ticker {
  compute: () => unknown;
  streams: Set<SseStream>;
  last: string | undefined;
}

export class SseHub {
  readonly #streams = new Set<SseStream>();
  readonly #tickers = new Map<string, Ticker>();
  readonly #maxStreams: number;
  readonly #maxBufferedBytes: number;
  readonly #tickMs: number;
  readonly #keepAliveTicks: number;
  #timer: NodeJS.Timeout | undefined;
  #ticks = 0;

  constructor(options: SseHubOptions = {}) {
    this.#maxStreams = options.maxStreams ?? 64;
    this.#maxBufferedBytes = options.maxBufferedBytes ?? 256 * 1024;
    this.#tickMs = options.tickMs ?? 500;
    this.#keepAliveTicks = Math.max(1, Math.round((options.keepAliveMs ?? 15_000) / this.#tickMs));
  }

  /** Answers the request as an event stream, or with 503 when too many are open. */
  open(res: ServerResponse): SseStream | undefined {
    if (this.#streams.size >= this.#maxStreams) {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '5' });
      res.end('{"error":"too many streams"}\n');
      return undefined;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const stream = new SseStream(res, this.#maxBufferedBytes);
    this.#streams.add(stream);
    stream.onClose(() => {
      this.#streams.delete(stream);
      for (const ticker of this.#tickers.values()) ticker.streams.delete(stream);
      if (this.#streams.size === 0) this.#stop();
    });
    // The response closes when the client goes away (the request's own 'close' may come sooner).
    res.once('close', () => stream.close());
    this.#start();
    return stream;
  }

  /** Sends `name` events to `stream`: the value now, then each time a tick finds it changed. */
  subscribeTicker(name: string, stream: SseStream, compute: () => unknown): void {
    let ticker = this.#tickers.get(name);
    if (!ticker) this.#tickers.set(name, (ticker = { compute, streams: new Set(), last: undefined }));
    ticker.streams.add(stream);
    const data = JSON.stringify(ticker.compute());
    // A change since the last tick goes to every follower, not only the new one.
    const to = data === ticker.last ? [stream] : ticker.streams;
    ticker.last = data;
    for (const s of to) s.write(`event: ${name}\ndata: ${data}\n\n`);
  }

  closeAll(): void {
    for (const stream of [...this.#streams]) stream.close();
    this.#stop();
  }

  #start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#tick(), this.#tickMs);
    this.#timer.unref();
  }

  #stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(): void {
    this.#ticks++;
    for (const [name, ticker] of this.#tickers) {
      if (ticker.streams.size === 0) continue;
      const data = JSON.stringify(ticker.compute());
      if (data === ticker.last) continue;
      ticker.last = data;
      for (const stream of ticker.streams) stream.write(`event: ${name}\ndata: ${data}\n\n`);
    }
    const keepAlive = this.#ticks % this.#keepAliveTicks === 0;
    for (const stream of [...this.#streams]) {
      if (stream.alive && !stream.alive.check()) {
        stream.send(stream.alive.endEvent, {});
        stream.close();
        continue;
      }
      if (keepAlive) stream.write(': keep-alive\n\n');
    }
  }
}
