/**
 * The XState actor systems of a node's connection actors: one system per shard of up to
 * `SHARD_SIZE` sessions, instead of one per session. A root actor made by `createActor` builds
 * its own system (its maps, scheduler, inspection set and about fifteen closures, some 2 KiB per
 * idle session); an actor made with `parent` joins its parent's. Each shard is an empty actor that
 * only stands as that parent; the sessions are not its children in any machine (a node machine
 * spawning them would copy its `children` on every connect and close).
 *
 * What changes for a session actor, and why it is safe here:
 * - Its done and error events are relayed to the shard's actor, which hands them to the node
 *   (`onEnded`): the node's one supervisor of its sessions, instead of an observer per session
 *   (an observer costs each idle session an object, two bound functions and two closures).
 * - Stopping it ends it without `stop()` (a non-root actor cannot be stopped directly): the
 *   machine reaches `closed` by itself, as it always did.
 * - A stop cancels its timers by walking the shard's scheduled events: `SHARD_SIZE` bounds that.
 * - Inspection is per system: while someone observes (`setInspection`), each shard has one
 *   inspection observer, and the node routes each event to its session (`ownerOf`). While nobody
 *   observes, no shard has one, and XState builds no inspection event at all.
 */
import { createActor, fromTransition, type ActorOptions, type AnyActorLogic, type AnyActorRef, type InspectionEvent, type Subscription } from 'xstate';

/** XState's clock (the `clock` of an actor system), as its ActorOptions type it. */
type Clock = NonNullable<ActorOptions<AnyActorLogic>['clock']>;

/** Sessions per shard: small enough that a stop's walk of the shard's timers stays cheap. */
export const SHARD_SIZE = 256;

export interface Shard {
  /** The parent to give a new session actor (`createActor(logic, { parent })`). */
  readonly parent: AnyActorRef;
  /** Sessions of this shard not yet released. */
  live: number;
  inspection: Subscription | undefined;
}

/** How a session actor of a shard ended: its id, and the error when it failed (XState's done or error event). */
export type ActorEnded = { actorId: string; kind: 'done' } | { actorId: string; kind: 'error'; error: unknown };

const DONE = 'xstate.done.actor.';
const ERROR = 'xstate.error.actor.';

/**
 * The logic of a shard's actor: it keeps no state, and tells `onEnded` of each child's done and
 * error event (XState relays them to the parent after the child stopped), ignoring anything else.
 */
const shardLogic = (onEnded: (ended: ActorEnded) => void) =>
  fromTransition((state: null, event: { type: string; actorId?: string; error?: unknown }) => {
    if (event.actorId !== undefined) {
      if (event.type.startsWith(DONE)) onEnded({ actorId: event.actorId, kind: 'done' });
      else if (event.type.startsWith(ERROR)) onEnded({ actorId: event.actorId, kind: 'error', error: event.error });
    }
    return state;
  }, null);

export class ActorShards {
  readonly #shards = new Set<Shard>();
  #open: Shard | undefined;
  #inspect: ((ev: InspectionEvent) => void) | undefined;
  readonly #logic: ReturnType<typeof shardLogic>;
  readonly #clock: Clock | undefined;

  /**
   * @param onEnded told of every session actor that reached its final state or failed.
   * @param clock the timers of every shard's actors (timer-queue.ts); XState's default (the
   * global `setTimeout`) when absent.
   */
  constructor(onEnded: (ended: ActorEnded) => void = () => {}, clock?: Clock) {
    this.#logic = shardLogic(onEnded);
    this.#clock = clock;
  }

  /** Shards in use (for tests and the heap's sake). */
  get size(): number {
    return this.#shards.size;
  }

  /** The shard a new session joins; call `release` with it once the session has ended. */
  acquire(): Shard {
    let shard = this.#open;
    if (!shard || shard.live >= SHARD_SIZE) {
      const parent = createActor(this.#logic, this.#clock ? { clock: this.#clock } : {});
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
