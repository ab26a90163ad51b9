/**
 * Every NATS subject chatgate uses, in one table.
 *
 * User and room ids are arbitrary strings (dots, `*`, `>`, spaces, any Unicode). Each becomes a
 * single subject token by base64url-encoding its UTF-8 bytes: the alphabet is `A-Z a-z 0-9 - _`,
 * so no id can form a wildcard, an extra token or another id's subject, and the encoding is
 * one-to-one because ids are well-formed Unicode (see `isValidId`).
 */
const PREFIX = 'chatgate.v1';

/** One subject token for an arbitrary id. */
export function encodeId(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

export function decodeId(token: string): string {
  return Buffer.from(token, 'base64url').toString('utf8');
}

/** The longest user or room id, in UTF-16 code units. */
export const MAX_ID_LENGTH = 256;

/**
 * A user or room id: 1–256 characters of well-formed Unicode. Lone surrogates are refused
 * because UTF-8 would turn each into U+FFFD, and two ids would then share a subject.
 */
export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && id.length >= 1 && id.length <= MAX_ID_LENGTH && id.isWellFormed();
}

export const subjects = {
  /** Request/reply: `{ token }` → an auth verdict. Served by the auth service's queue group. */
  authVerify: `${PREFIX}.auth.verify`,
  /** Request/reply: → the auth service's public JWK Set. */
  authJwks: `${PREFIX}.auth.jwks`,
  /** Published by each auth service when it starts and whenever its key set changes. */
  authJwksAnnounce: `${PREFIX}.auth.jwks.announce`,
  /**
   * Request/reply: `{ jti }` or `{ sub }` → `{ ok: true, revocation }` once stored in the
   * revocations bucket (`REVOCATIONS_BUCKET`, watched by every node), or `{ ok: false, code, error }`.
   */
  authRevoke: `${PREFIX}.auth.revoke`,
  /** Messages to every session of one user. */
  user: (id: string) => `${PREFIX}.user.${encodeId(id)}`,
  /** Messages to every session that joined one room. */
  room: (id: string) => `${PREFIX}.room.${encodeId(id)}`,
  /**
   * Durable delivery (`DELIVERY=durable`): a message to a user is published here with JetStream
   * into the stream `CHATGATE_USERS`, which stores it and republishes it to `user(id)`.
   */
  storedUser: (id: string) => `${PREFIX}.msg.user.${encodeId(id)}`,
  /** Durable delivery: a message to a room, stored in `CHATGATE_ROOMS` and republished to `room(id)`. */
  storedRoom: (id: string) => `${PREFIX}.msg.room.${encodeId(id)}`,
  /** Recording lines of one gateway node (see src/observe/recording.ts); `recordingAll` for every node. */
  recording: (node: string) => `${PREFIX}.recording.${encodeId(node)}`,
  recordingAll: `${PREFIX}.recording.*`,
  /** Each gateway's heartbeat (every PRESENCE_HEARTBEAT_MS), `hello` when it starts and `bye` when it stops. */
  presenceNodes: `${PREFIX}.presence.nodes`,
  /** Request to every gateway (no queue group): `{ room }` → one `{ node, users }` reply each. */
  presenceQuery: `${PREFIX}.presence.query`,
  /**
   * Where presence answers go: the asking node's reply subject is `presenceAnswers(<nuid>)`, not an
   * inbox, so the gateways answer without any right to publish into inboxes (docs/security.md).
   */
  presenceAnswers: (id: string) => `${PREFIX}.presence.answers.${id}`,
  presenceAnswersAll: `${PREFIX}.presence.answers.*`,
  /**
   * Request/reply, the server-side publish API: `{ to, body, from, key? }` → `{ msgId, pos? }` or
   * `{ error: { code, message } }`. Served by the gateways' queue group; asked by the api role only.
   */
  apiPublish: `${PREFIX}.api.publish`,
} as const;

/** The queue group of the gateways for the publish API: each request is answered by one node. */
export const GATEWAY_QUEUE = 'chatgate-gateways';

/**
 * The JetStream key-value bucket of revocations (stream `KV_chatgate-revocations`, subjects
 * `$KV.chatgate-revocations.>`): made and written by the auth role, read and watched by gateways.
 */
export const REVOCATIONS_BUCKET = 'chatgate-revocations';

/** The JetStream streams of durable delivery: one for every user inbox, one for every room. */
export const USERS_STREAM = 'CHATGATE_USERS';
export const ROOMS_STREAM = 'CHATGATE_ROOMS';

/** The queue group of the auth services: each request is answered by one of them. */
export const AUTH_QUEUE = 'chatgate-auth';
