/**
 * Who may do what on the bus: one table of NATS permissions per role, built from the subjects in
 * subjects.ts, from which `chatgate nats` writes the nats-server `authorization` block (see
 * nats-server-config.ts) and docs/security.md explains each line.
 *
 * Everything not allowed here is refused by nats-server: each role gets allow lists, never
 * `>`. No role has `allow_responses`: that would let anyone who may ask the auth service choose
 * where its answer goes (a key of the revocations bucket, `$JS.API.STREAM.PURGE.…`). The auth
 * role publishes its answers only to the inboxes of the roles that ask it (`AUTH_ASKERS`), and
 * the auth service refuses any other reply subject too (src/auth/service.ts).
 * Each role has its own inbox prefix (nats.js `inboxPrefix`), so one role cannot read another's
 * replies: the auth verdicts to gateways arrive on `_INBOX_gateway.…`, which only the gateway
 * role may subscribe to.
 *
 * The JetStream subjects are those nats.js v3 (`@nats-io/kv`, `@nats-io/jetstream`) uses against
 * nats-server 2.9 for the revocations bucket, traced with `nats-server -DV`: `Kvm.create`/`open`
 * ask `$JS.API.INFO` and `$JS.API.STREAM.INFO.<stream>` (create also `STREAM.CREATE`), `put`
 * publishes to `$KV.<bucket>.<key>` and waits for the ack, `get` is a direct get (a `MSG.GET` on
 * buckets without `allow_direct`), `watch` and `keys` create an ordered consumer
 * (`CONSUMER.CREATE.<stream>.<name>.<filter>`, `CONSUMER.INFO` when it resets) that pushes to an
 * inbox and asks for flow control replies on `$JS.FC.<stream>.…`.
 *
 * Durable delivery (`DELIVERY=durable`, src/durable/) adds, for the gateway only: JetStream
 * publishes to the stored subjects (`js.publish` is a PUB whose reply is the PubAck), and on
 * exactly the two message streams `STREAM.CREATE` (`jsm.streams.add`, idempotent), `STREAM.INFO`
 * (an existing stream with other settings; the stream's first and last sequence and one
 * destination's count, for a position of an empty destination and a resume's check) and `STREAM.MSG.GET` (leader reads: the resume barrier,
 * catching up, history). No update, purge, delete, consumer or direct get: see docs/security.md.
 */
import { AUTH_QUEUE, GATEWAY_QUEUE, REVOCATIONS_BUCKET, ROOMS_STREAM, USERS_STREAM, subjects } from '../subjects.ts';

export { REVOCATIONS_BUCKET };

export const BUS_ROLES = ['gateway', 'auth', 'api'] as const;
export type BusRole = (typeof BUS_ROLES)[number];

/** The stream nats-server keeps the revocations bucket in. */
const REVOCATIONS_STREAM = `KV_${REVOCATIONS_BUCKET}`;

/** The inbox prefix of a role's connections: replies to its requests arrive under it. */
export function inboxPrefix(role: BusRole): string {
  return `_INBOX_${role}`;
}

/** The roles that ask the auth service (verify, key set, revoke): it answers on their inboxes only. */
export const AUTH_ASKERS: readonly BusRole[] = ['gateway', 'auth'];

/**
 * True when the auth service may answer on `reply`: an inbox of a role that asks it, or nats.js's
 * default `_INBOX.` (a client without a role, on a server without permissions).
 */
export function isAskerInbox(reply: string): boolean {
  return reply.startsWith('_INBOX.') || AUTH_ASKERS.some((role) => reply.startsWith(`${inboxPrefix(role)}.`));
}

/** A subject of subjects.ts with its last token (the encoded id) made a wildcard: every id. */
const everyId = (subject: string) => subject.slice(0, subject.lastIndexOf('.') + 1) + '*';
const USERS = everyId(subjects.user('x'));
const ROOMS = everyId(subjects.room('x'));
const RECORDINGS = subjects.recordingAll;
const STORED_USERS = everyId(subjects.storedUser('x'));
const STORED_ROOMS = everyId(subjects.storedRoom('x'));

/** One right, with the reason it is there (the reasons are in docs/security.md). */
export interface Grant {
  subject: string;
  /** A queue group the subscription must use (`subject queue` in the server config). */
  queue?: string;
  why: string;
}

export interface RolePermissions {
  publish: Grant[];
  subscribe: Grant[];
  /** Subscriptions refused even if an allow entry would match (belt and braces, documented). */
  denySubscribe?: string[];
  /**
   * May publish replies to the requests it received (nats-server `allow_responses`). No role has
   * it (see above); the field stays so that the config and the docs test say so explicitly.
   */
  allowResponses: boolean;
}

const js = (api: string, why: string): Grant => ({ subject: `$JS.API.${api}`, why });

/** What a gateway needs for durable delivery, on each message stream. */
const durableDelivery: Grant[] = [
  { subject: STORED_USERS, why: 'store a message to a user (durable delivery; the reply is the PubAck)' },
  { subject: STORED_ROOMS, why: 'store a message to a room (durable delivery; the reply is the PubAck)' },
  ...[USERS_STREAM, ROOMS_STREAM].flatMap((stream) => [
    js(`STREAM.CREATE.${stream}`, 'make the message stream when it does not exist (never update it)'),
    js(`STREAM.INFO.${stream}`, 'read a message stream’s settings and epoch, its first and last sequence (empty destinations, resume)'),
    js(`STREAM.MSG.GET.${stream}`, 'leader reads: resume barrier, catching up, history'),
  ]),
];

/** What every role that reads the revocations bucket needs. */
const readRevocations: Grant[] = [
  js('INFO', 'nats.js asks for the account info when it opens a bucket'),
  js(`STREAM.INFO.${REVOCATIONS_STREAM}`, 'open the revocations bucket'),
  js(`DIRECT.GET.${REVOCATIONS_STREAM}.>`, 'get one revocation'),
  js(`STREAM.MSG.GET.${REVOCATIONS_STREAM}`, 'get one revocation (bucket without direct get)'),
  js(`CONSUMER.CREATE.${REVOCATIONS_STREAM}.>`, 'watch the bucket and list its keys (ordered consumer)'),
  js(`CONSUMER.INFO.${REVOCATIONS_STREAM}.>`, 'an ordered consumer checks itself when it resets'),
  js(`CONSUMER.DELETE.${REVOCATIONS_STREAM}.>`, 'a stopped or reset watch deletes its consumer'),
  { subject: `$JS.FC.${REVOCATIONS_STREAM}.>`, why: 'flow control replies of the watch' },
];

export const busPermissions: Readonly<Record<BusRole, RolePermissions>> = {
  auth: {
    subscribe: [
      { subject: subjects.authVerify, queue: AUTH_QUEUE, why: 'answer token checks, one instance each' },
      { subject: subjects.authJwks, queue: AUTH_QUEUE, why: 'serve the public key set' },
      { subject: subjects.authRevoke, queue: AUTH_QUEUE, why: 'record revocations' },
      { subject: `${inboxPrefix('auth')}.>`, why: 'replies to its own requests (JetStream API, revoke)' },
    ],
    publish: [
      { subject: subjects.authJwksAnnounce, why: 'announce its key set to the gateways' },
      { subject: subjects.authRevoke, why: '`chatgate revoke` asks an auth service with this role' },
      ...readRevocations,
      js(`STREAM.CREATE.${REVOCATIONS_STREAM}`, 'create the revocations bucket'),
      js(`STREAM.UPDATE.${REVOCATIONS_STREAM}`, 'bring the bucket’s max age and replicas to its settings'),
      { subject: `$KV.${REVOCATIONS_BUCKET}.>`, why: 'write revocations' },
      ...AUTH_ASKERS.map((role) => ({ subject: `${inboxPrefix(role)}.>`, why: `answer the ${role} role's requests` })),
    ],
    allowResponses: false,
  },
  gateway: {
    subscribe: [
      { subject: USERS, why: 'deliver to the sessions of a user on this node' },
      { subject: ROOMS, why: 'deliver to the sessions in a room on this node' },
      { subject: subjects.authJwksAnnounce, why: 'cache the key set for degraded mode' },
      { subject: `${inboxPrefix('gateway')}.>`, why: 'auth verdicts, key sets, JetStream replies, presence answers' },
      { subject: subjects.presenceNodes, why: 'hear which gateways are alive (presence)' },
      { subject: subjects.presenceQuery, why: 'answer another gateway’s presence query with its own users' },
      { subject: subjects.apiPublish, queue: GATEWAY_QUEUE, why: 'serve the publish API, one gateway each' },
      { subject: subjects.presenceAnswersAll, why: 'the answers to its own presence queries' },
    ],
    denySubscribe: [subjects.authVerify, subjects.authRevoke, subjects.authJwks],
    publish: [
      { subject: subjects.authVerify, why: 'ask the auth service to check a token' },
      { subject: subjects.authJwks, why: 'ask for the key set (also the breaker’s health probe)' },
      { subject: USERS, why: 'a session sends to a user' },
      { subject: ROOMS, why: 'a session sends to a room' },
      { subject: RECORDINGS, why: 'recording to NATS (`RECORD_TO=nats`)' },
      { subject: subjects.presenceNodes, why: 'its presence heartbeat, hello and bye' },
      { subject: subjects.presenceQuery, why: 'ask the other gateways who is in a room' },
      { subject: subjects.presenceAnswersAll, why: 'answer another gateway’s presence query' },
      { subject: `${inboxPrefix('api')}.>`, why: 'answer a publish API request (only into the api role’s inboxes)' },
      ...readRevocations,
      ...durableDelivery,
    ],
    allowResponses: false,
  },
  api: {
    subscribe: [{ subject: `${inboxPrefix('api')}.>`, why: 'replies to its requests' }],
    publish: [{ subject: subjects.apiPublish, why: 'requests to the server-side publish API' }],
    allowResponses: false,
  },
};
