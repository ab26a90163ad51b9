/**
 * The two JetStream streams of durable delivery and how a gateway makes sure they exist.
 *
 * `CHATGATE_USERS` holds `chatgate.v1.msg.user.*` and `CHATGATE_ROOMS` `chatgate.v1.msg.room.*`
 * (one subject per user inbox or room). Each republishes every stored message, with its
 * `Nats-Sequence` and the previous sequence of the same subject (`Nats-Last-Sequence`), to the
 * live subject that ephemeral delivery uses (`chatgate.v1.user.<id>`, `chatgate.v1.room.<id>`):
 * nodes keep one core subscription per subject and learn from the headers where each message
 * stands and whether they missed one.
 *
 * Gateways create the streams (`STREAM.CREATE` on exactly these two names, no update, purge or
 * delete): an existing stream keeps its settings, and a differing one is logged and used as it
 * is. See docs/durability.md.
 */
import { nanos } from '@nats-io/nats-core';
import {
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { ROOMS_STREAM, USERS_STREAM, subjects } from '../subjects.ts';
import type { Logger } from '../log.ts';
import { defaults } from '../defaults.ts';
import { streamEpoch } from './positions.ts';

export interface StreamOptions {
  /** How long a message is kept, in seconds (`HISTORY_MAX_AGE_S`). @default 86400 */
  maxAgeS?: number;
  /** Messages kept per user inbox and per room (`HISTORY_MAX_PER_TARGET`). @default 1000 */
  maxPerTarget?: number;
  /** How long a `key` deduplicates a send, in seconds (`DEDUPE_WINDOW_S`). @default 120 */
  dedupeWindowS?: number;
  /** Copies of each stream: 1 on one server, 3 on a cluster (`STREAM_REPLICAS`). @default 1 */
  replicas?: number;
}

export const streamDefaults = {
  maxAgeS: defaults.historyMaxAgeS,
  maxPerTarget: defaults.historyMaxPerTarget,
  dedupeWindowS: defaults.dedupeWindowS,
  replicas: defaults.streamReplicas,
} as const;

/** The subject token a subject of subjects.ts ends with, made a wildcard. */
const wildcard = (subject: string) => subject.slice(0, subject.lastIndexOf('.') + 1) + '*';

export const durableStreams = {
  user: { name: USERS_STREAM, stored: wildcard(subjects.storedUser('x')), live: wildcard(subjects.user('x')) },
  room: { name: ROOMS_STREAM, stored: wildcard(subjects.storedRoom('x')), live: wildcard(subjects.room('x')) },
} as const;

export type StreamKind = keyof typeof durableStreams;

/** The configuration of one stream. */
export function streamConfig(kind: StreamKind, options: StreamOptions = {}): Partial<StreamConfig> & { name: string } {
  const o = { ...streamDefaults, ...options };
  const s = durableStreams[kind];
  return {
    name: s.name,
    subjects: [s.stored],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    max_msgs_per_subject: o.maxPerTarget,
    max_age: nanos(o.maxAgeS * 1000),
    duplicate_window: nanos(Math.min(o.dedupeWindowS, o.maxAgeS) * 1000),
    num_replicas: o.replicas,
    // Reads go to the leader (STREAM.MSG.GET): a follower's copy may lag.
    allow_direct: false,
    deny_delete: true,
    deny_purge: true,
    republish: { src: s.stored, dest: s.live.replace(/\*$/, '{{wildcard(1)}}') },
  };
}

/** JetStream's error codes: a name that a stream with other settings already has; no such stream. */
const STREAM_NAME_IN_USE = 10058;
const STREAM_NOT_FOUND = 10059;

/** Per stream kind: its epoch (see positions.ts). */
export type Epochs = Record<StreamKind, string>;

/** The settings a gateway sets that an existing stream may have otherwise. */
const differs = (want: Partial<StreamConfig>, have: StreamConfig) =>
  want.max_msgs_per_subject !== have.max_msgs_per_subject ||
  want.max_age !== have.max_age ||
  want.duplicate_window !== have.duplicate_window ||
  want.num_replicas !== have.num_replicas;

/**
 * Makes both streams unless they exist, and returns their epochs. An existing stream is only
 * read (`STREAM.INFO`), never created again: on nats-server 2.9 a `STREAM.CREATE` of an existing
 * R3 stream while it has no leader (an election after a server died) goes through as a new
 * assignment with a new creation time, which a replica that restarts later takes as the stream's
 * `created`: once it leads, the epoch of positions would change under the clients (every resume
 * `recovered: false`, every message seen twice under two positions).
 */
export async function ensureStreams(jsm: JetStreamManager, options: StreamOptions, log: Logger): Promise<Epochs> {
  const epochs = {} as Epochs;
  for (const kind of ['user', 'room'] as const) {
    const config = streamConfig(kind, options);
    let info;
    try {
      info = await jsm.streams.info(config.name);
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== STREAM_NOT_FOUND) throw err;
    }
    if (!info) {
      try {
        info = await jsm.streams.add(config);
      } catch (err) {
        // Made meanwhile by another gateway, with other settings: used as it is.
        if (!(err instanceof JetStreamApiError) || err.code !== STREAM_NAME_IN_USE) throw err;
        info = await jsm.streams.info(config.name);
      }
    }
    // Made earlier with other settings: used as it is (a gateway may not change it).
    if (differs(config, info.config)) log.warn({ stream: config.name }, 'stream exists with other settings; using it as it is');
    epochs[kind] = streamEpoch(info.config.name, info.created);
  }
  return epochs;
}

/** The stream and stored subject behind a live subject (`chatgate.v1.user.<id>` → `…msg.user.<id>`). */
export function storedOf(live: string): { kind: StreamKind; stored: string } | undefined {
  for (const kind of ['user', 'room'] as const) {
    const prefix = durableStreams[kind].live.slice(0, -1);
    if (live.startsWith(prefix)) {
      return { kind, stored: durableStreams[kind].stored.slice(0, -1) + live.slice(prefix.length) };
    }
  }
  return undefined;
}
