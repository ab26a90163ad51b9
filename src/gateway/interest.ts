/**
 * A node's interest in NATS subjects: one subscription per user or room subject, shared by every
 * local session that needs it, made when the first one arrives and removed when the last leaves.
 *
 * `join` resolves once the NATS server has the subscription (a flush round trip, shared by every
 * join and publish in the same tick), and only then adds the member: a session is acknowledged
 * only when it can really receive.
 */
import type { Msg, MsgCallback, NatsConnection, Subscription } from '@nats-io/nats-core';
import { silentLogger, type Logger } from '../log.ts';
import { CallbackGuard } from '../bus/callback-guard.ts';

/** What a subscription delivers to: one local session. */
export interface Member {
  readonly id: string;
  /** Subjects this member currently wants; interest checks it before adding the member. */
  readonly subjects: Set<string>;
}

/** One message heard on `subject`; `members` are its local members now. */
export type Deliver<M extends Member> = (members: ReadonlySet<M>, data: Uint8Array, subject: string, msg: Msg) => void;

interface Entry<M> {
  sub: Subscription;
  members: Set<M>;
  /** Joins waiting for the flush. */
  pending: number;
}

export class Interest<M extends Member> {
  readonly #nc: NatsConnection;
  readonly #deliver: Deliver<M>;
  readonly #entries = new Map<string, Entry<M>>();
  readonly #guard: CallbackGuard;
  readonly #onRelease: ((subject: string) => void) | undefined;
  /**
   * The callback of every subscription made here: it finds the subject's members by the
   * message's subject (each subscription is of one literal subject), so a subject held by an
   * idle session costs no closures of its own.
   */
  readonly #callback: MsgCallback<Msg>;
  #nextFlush: Promise<void> | undefined;

  /** `log` takes the one bounded line of a subscription error or of a delivery that threw. */
  constructor(nc: NatsConnection, deliver: Deliver<M>, log: Logger = silentLogger, onRelease?: (subject: string) => void) {
    this.#nc = nc;
    this.#onRelease = onRelease;
    this.#deliver = deliver;
    this.#guard = new CallbackGuard(log);
    this.#callback = this.#guard.callback('interest', (msg) => {
      const entry = this.#entries.get(msg.subject);
      // Only while subscribed: nats.js delivers nothing on a subscription after its unsubscribe.
      if (entry) this.#deliver(entry.members, msg.data, msg.subject, msg);
    });
  }

  /** Number of NATS subscriptions held (one per subject). */
  get size(): number {
    return this.#entries.size;
  }

  has(subject: string): boolean {
    return this.#entries.has(subject);
  }

  /** The local members of `subject` now. */
  members(subject: string): ReadonlySet<M> | undefined {
    return this.#entries.get(subject)?.members;
  }

  /** One flush for every caller in the same tick: the server has seen all that came before. */
  flush(): Promise<void> {
    return (this.#nextFlush ??= Promise.resolve().then(() => {
      this.#nextFlush = undefined;
      return this.#nc.flush();
    }));
  }

  /** Adds `member` to `subject` once the server has the subscription. */
  async join(subject: string, member: M): Promise<void> {
    member.subjects.add(subject);
    let entry = this.#entries.get(subject);
    if (entry?.members.has(member)) return;
    if (!entry) {
      const sub = this.#nc.subscribe(subject, { callback: this.#callback });
      entry = { sub, members: new Set<M>(), pending: 0 };
      this.#entries.set(subject, entry);
    }
    entry.pending += 1;
    try {
      await this.flush();
    } finally {
      entry.pending -= 1;
      if (member.subjects.has(subject)) entry.members.add(member);
      this.#release(subject, entry);
    }
  }

  leave(subject: string, member: M): void {
    member.subjects.delete(subject);
    const entry = this.#entries.get(subject);
    if (!entry) return;
    entry.members.delete(member);
    this.#release(subject, entry);
  }

  /** Removes `member` from every subject it joined. */
  leaveAll(member: M): void {
    for (const subject of [...member.subjects]) this.leave(subject, member);
  }

  #release(subject: string, entry: Entry<M>): void {
    if (entry.members.size > 0 || entry.pending > 0) return;
    if (this.#entries.get(subject) !== entry) return;
    this.#entries.delete(subject);
    entry.sub.unsubscribe();
    this.#onRelease?.(subject);
  }
}
