/**
 * XState's clock for a node's session actors (`clock` of their shards' systems, actor-shards.ts):
 * one Node timer for all of them, armed for the earliest deadline, and the deadlines in a binary
 * heap. Each idle session holds one timer (its token's expiry warning or its close); a Node
 * `Timeout` with its place in a per-duration `TimersList` costs about 140 bytes of heap each, an
 * entry here about 40. Callbacks run in deadline order, never before their delay; one that throws
 * does not stop the others (its error is thrown, as uncaught, once the rest have run).
 *
 * Only the live gateway uses it. Machine tests and replays give their actors XState's
 * `SimulatedClock` instead, as before: what a machine does at a given time does not depend on
 * which clock delivered the moment.
 */

/** An armed callback; what `setTimeout` returns and `clearTimeout` takes. */
export interface QueuedTimer {
  /** `performance.now()` milliseconds. */
  at: number;
  /** Among equal deadlines, earlier first. */
  seq: number;
  fn: () => void;
  /** Its place in the heap; -1 once fired or cleared. */
  index: number;
}

/** Node's timers fire at once past 2^31-1 ms: the one timer is re-armed in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

const before = (a: QueuedTimer, b: QueuedTimer) => a.at < b.at || (a.at === b.at && a.seq < b.seq);

export class TimerQueue {
  readonly #heap: QueuedTimer[] = [];
  #seq = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the one timer is armed for (`performance.now()`), Infinity when not armed. */
  #armedFor = Infinity;

  /** Armed timers. */
  get size(): number {
    return this.#heap.length;
  }

  setTimeout = (fn: () => void, ms: number): QueuedTimer => {
    const entry: QueuedTimer = { at: performance.now() + Math.max(0, ms), seq: this.#seq++, fn, index: this.#heap.length };
    this.#heap.push(entry);
    this.#up(entry.index);
    if (entry.at < this.#armedFor) this.#arm();
    return entry;
  };

  clearTimeout = (entry: QueuedTimer): void => {
    const i = entry?.index;
    if (i === undefined || i < 0 || this.#heap[i] !== entry) return;
    entry.index = -1;
    const last = this.#heap.pop()!;
    if (last !== entry) {
      this.#heap[i] = last;
      last.index = i;
      this.#down(i);
      this.#up(last.index);
    }
    // The one timer stays armed for the earliest deadline it had: firing early finds nothing due.
  };

  #arm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const head = this.#heap[0];
    if (!head) return;
    const delay = Math.min(MAX_DELAY_MS, Math.max(0, Math.ceil(head.at - performance.now())));
    this.#armedFor = head.at;
    this.#timer = setTimeout(this.#fire, delay);
  }

  #fire = (): void => {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = performance.now();
    const errors: unknown[] = [];
    // Only what was armed before and is due now: a callback that arms a new timer with no delay
    // waits for the next turn.
    const armedBefore = this.#seq;
    let head = this.#heap[0];
    while (head && head.at <= now && head.seq < armedBefore) {
      this.clearTimeout(head);
      try {
        head.fn();
      } catch (err) {
        errors.push(err);
      }
      head = this.#heap[0];
    }
    this.#arm();
    // As a throwing `setTimeout` callback would: uncaught, once the others have run.
    if (errors.length > 0) throw errors[0];
  };

  #up(i: number): void {
    const heap = this.#heap;
    const entry = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (!before(entry, parent)) break;
      heap[i] = parent;
      parent.index = i;
      i = p;
    }
    heap[i] = entry;
    entry.index = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const entry = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && before(heap[r]!, heap[l]!) ? r : l;
      if (!before(heap[child]!, entry)) break;
      heap[i] = heap[child]!;
      heap[i]!.index = i;
      i = child;
    }
    heap[i] = entry;
    entry.index = i;
  }
}
