/**
 * The XState actor systems of a node's connection actors: one system per shard of up to
 * `SHARD_SIZE` sessions, instead of one per session. A root actor made by `createActor` builds
 * its own system (its maps, scheduler, inspection set and about fifteen closures, some 2 KiB per
 * idle session); an actor made with `parent` joins its parent's. Each shard is an empty actor that
 * only stands as that parent; the sessions are not its children in any machine (a node machine
 * spawning them would copy its `children` on every connect and close).
 *
 * What changes for a session actor, and why it is safe here:
 * - Its done and error events are relayed to the shard's empty actor, which ignores them; its own
 *   observers (session.ts) still hear its error and its final snapshot.
 * - Stopping it ends it without `stop()` (a non-root actor cannot be stopped directly): the
 *   machine reaches `closed` by itself, as it always did.
 * - A stop cancels its timers by walking the shard's scheduled events: `SHARD_SIZE` bounds that.
 * - Inspection is per system: while someone observes (`setInspection`), each shard has one
 *   inspection observer, and the node routes each event to its session (`ownerOf`). While nobody
 *   observes, no shard has one, and XState builds no inspection event at all.
 */
import { createEmptyActor, type AnyActorRef, type InspectionEvent, type Subscription } from 'xstate';

/** Sessions per shard: small enough that a stop's walk of the shard's timers stays cheap. */
export const SHARD_SIZE = 256;

export interface Shard {
  /** The parent to give a new session actor (`createActor(logic, { parent })`). */
  readonly parent: AnyActorRef;
  /** Sessions of this shard not yet released. */
  live: number;
  inspection: Subscription | undefined;
}

export class ActorShards {
  readonly #shards = new Set<Shard>();
  #open: Shard | undefined;
  #inspect: ((ev: InspectionEvent) => void) | undefined;

  /** Shards in use (for tests and the heap's sake). */
  get size(): number {
    return this.#shards.size;
  }

  /** The shard a new session joins; call `release` with it once the session has ended. */
  acquire(): Shard {
    let shard = this.#open;
    if (!shard || shard.live >= SHARD_SIZE) {
      const parent = createEmptyActor();
      parent.start();
      shard = { parent, live: 0, inspection: this.#inspect ? parent.system.inspect(this.#inspect) : undefined };
      this.#shards.add(shard);
      this.#open = shard;
    }
    shard.live += 1;
    return shard;
  }

  /** A session of `shard` has ended; an empty shard that is not the open one is dropped. */
  release(shard: Shard): void {
    shard.live -= 1;
    if (shard.live > 0 || shard === this.#open) return;
    shard.inspection?.unsubscribe();
    this.#shards.delete(shard);
    shard.parent.stop();
  }

  /** Inspects every shard, now and as they come, with `inspect`; undefined stops it. */
  setInspection(inspect: ((ev: InspectionEvent) => void) | undefined): void {
    this.#inspect = inspect;
    for (const shard of this.#shards) {
      shard.inspection?.unsubscribe();
      shard.inspection = inspect ? shard.parent.system.inspect(inspect) : undefined;
    }
  }
}
