/**
 * The chaos ledger: every send the application made and what became of it, every message the
 * application was handed, and the verdict: every acknowledged message delivered exactly once to
 * every addressed session, in send order per destination; every unacknowledged send delivered at
 * most once, and reported failed if never delivered; nothing lost, nothing duplicated.
 *
 * "Session" here is what the application sees: one SDK client, across all its reconnects.
 */

export interface SendRecord {
  /** `<sender>:<n>`, unique, carried in the body. */
  id: string;
  sender: string;
  /** The sender's n-th send (0-based): the order it was made in. */
  seq: number;
  to: { user: string } | { room: string };
  /** The clients the message is addressed to (user: that user's client; room: every member but the sender). */
  addressed: readonly string[];
  outcome: 'pending' | 'acked' | 'failed';
  failure?: string;
}

export interface LedgerCounts {
  sent: number;
  acked: number;
  failed: number;
  /** Still unsettled at the end (should be 0: every send settles by its deadline). */
  pending: number;
  /** Deliveries the acknowledged sends owe (one per addressed client). */
  expected: number;
  /** Deliveries seen, of acknowledged and unacknowledged sends alike. */
  delivered: number;
  /** Owed deliveries of acknowledged sends that never came. */
  lost: number;
  /** Deliveries beyond the first of one message to one client. */
  duplicated: number;
  /** Failed sends that were never delivered (fine: reported to the caller). */
  failedUndelivered: number;
  /** Deliveries that came before a message of the same sender and destination sent earlier. */
  outOfOrder: number;
  /** A delivery of something never sent, or to a client not addressed. */
  stray: number;
  /**
   * A room message of a client's own, handed back to it (a resume replayed a send that was in
   * flight when the socket dropped): not a loss or a duplicate for anyone addressed; counted, not failed.
   */
  echoes: number;
  /**
   * Deliveries the application got by reloading `history` after a `gap` (the SDK could not resume
   * a destination): counted as delivered, not checked for order. With default retention in the
   * chaos runs there should be none: a gap there means a defect.
   */
  recovered: number;
}

export class Ledger {
  readonly sends = new Map<string, SendRecord>();
  /** client → message id → times delivered. */
  readonly #deliveries = new Map<string, Map<string, number>>();
  /** client → destination|sender → highest seq delivered so far. */
  readonly #order = new Map<string, number>();
  #outOfOrder = 0;
  #stray = 0;
  #delivered = 0;
  #echoes = 0;
  #recovered = 0;

  sent(record: Omit<SendRecord, 'outcome'>): SendRecord {
    const full: SendRecord = { ...record, outcome: 'pending' };
    this.sends.set(record.id, full);
    return full;
  }

  acked(id: string): void {
    const r = this.sends.get(id);
    if (r) r.outcome = 'acked';
  }

  failed(id: string, failure: string): void {
    const r = this.sends.get(id);
    if (r) {
      r.outcome = 'failed';
      r.failure = failure;
    }
  }

  /** `client` was handed the message `id` for destination `dest` (`inbox` or `room:<r>`). */
  delivered(client: string, id: string, dest: string): void {
    this.#delivered++;
    const record = this.sends.get(id);
    if (record && record.sender === client) {
      this.#echoes++;
      return;
    }
    if (!record || !record.addressed.includes(client)) {
      this.#stray++;
      return;
    }
    let seen = this.#deliveries.get(client);
    if (!seen) this.#deliveries.set(client, (seen = new Map()));
    const times = (seen.get(id) ?? 0) + 1;
    seen.set(id, times);
    if (times > 1) return;
    const key = `${client}\u0000${dest}\u0000${record.sender}`;
    const last = this.#order.get(key) ?? -1;
    if (record.seq < last) this.#outOfOrder++;
    else this.#order.set(key, record.seq);
  }

  /** `client` got `id` from a `history` reload after a gap: once, and only if it had not got it live. */
  recovered(client: string, id: string): void {
    const record = this.sends.get(id);
    if (!record || record.sender === client || !record.addressed.includes(client) || this.times(client, id) > 0) return;
    let seen = this.#deliveries.get(client);
    if (!seen) this.#deliveries.set(client, (seen = new Map()));
    seen.set(id, 1);
    this.#delivered++;
    this.#recovered++;
  }

  /** How many times `client` got `id`. */
  times(client: string, id: string): number {
    return this.#deliveries.get(client)?.get(id) ?? 0;
  }

  counts(): LedgerCounts {
    const c: LedgerCounts = {
      sent: this.sends.size,
      acked: 0,
      failed: 0,
      pending: 0,
      expected: 0,
      delivered: this.#delivered,
      lost: 0,
      duplicated: 0,
      failedUndelivered: 0,
      outOfOrder: this.#outOfOrder,
      stray: this.#stray,
      echoes: this.#echoes,
      recovered: this.#recovered,
    };
    for (const r of this.sends.values()) {
      c[r.outcome === 'acked' ? 'acked' : r.outcome === 'failed' ? 'failed' : 'pending']++;
      let reached = 0;
      for (const client of r.addressed) {
        const n = this.times(client, r.id);
        if (n > 1) c.duplicated += n - 1;
        if (n > 0) reached++;
        if (r.outcome === 'acked') {
          c.expected++;
          if (n === 0) c.lost++;
        }
      }
      if (r.outcome === 'failed' && reached === 0) c.failedUndelivered++;
    }
    return c;
  }

  /** Up to `n` owed deliveries that never came, to say what was lost when something was. */
  lostSamples(n = 10): Array<{ client: string; id: string; to: SendRecord['to'] }> {
    const out: Array<{ client: string; id: string; to: SendRecord['to'] }> = [];
    for (const r of this.sends.values()) {
      if (r.outcome !== 'acked') continue;
      for (const client of r.addressed) {
        if (this.times(client, r.id) === 0) out.push({ client, id: r.id, to: r.to });
        if (out.length >= n) return out;
      }
    }
    return out;
  }

  /** Problems, one line each; empty when the run kept every promise. */
  verdict(): string[] {
    const c = this.counts();
    const problems: string[] = [];
    if (c.lost > 0) problems.push(`${c.lost} deliveries of acknowledged messages lost`);
    if (c.duplicated > 0) problems.push(`${c.duplicated} deliveries duplicated`);
    if (c.outOfOrder > 0) problems.push(`${c.outOfOrder} deliveries out of order`);
    if (c.stray > 0) problems.push(`${c.stray} stray deliveries`);
    if (c.pending > 0) problems.push(`${c.pending} sends neither acknowledged nor failed`);
    return problems;
  }
}
