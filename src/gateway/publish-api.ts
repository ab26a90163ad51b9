/**
 * The server-side publish API: the application's backend posts into a room or to a user.
 *
 * - NATS: a request on `chatgate.v1.api.publish` (only the api role may publish there; the
 *   gateways answer it as one queue group).
 * - HTTP: `POST /api/publish` on each gateway's port with `Authorization: Bearer <API_TOKEN>`;
 *   without API_TOKEN the path does not exist (404).
 *
 * Both take `{ "to": {"user"|"room": id}, "body": any, "from": NAME, "key"?: string }` and go
 * through the same `publishChat` as a session's `send` (src/durable/publish.ts): stored, with a
 * `pos`, and deduplicated by `key` under durable delivery. Recipients get a normal
 * `message` with `"from": NAME` and `"system": true`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import { z } from 'zod';
import { GATEWAY_QUEUE, subjects } from '../subjects.ts';
import { CallbackGuard } from '../bus/callback-guard.ts';
import { inboxPrefix } from '../bus/permissions.ts';
import type { Logger } from '../log.ts';
import { body, destination } from './codec.ts';
import { bearerToken, json, sameSecret } from '../http.ts';
import { errorSummary } from '../bounded-log.ts';
import type { ChatMessage, Published } from '../durable/publish.ts';
import type { Destination } from '../../machines/connection.machine.ts';
import { isValidId } from '../subjects.ts';

/** The request's JSON: strict, so that a typo is a 400 and not a silently ignored field. */
const publishRequest = z.strictObject({
  to: destination,
  body,
  from: z.string().refine(isValidId, 'must be 1–256 characters of well-formed Unicode'),
  key: z.string().min(1).max(64).optional(),
});

export type PublishErrorCode = 'bad_request' | 'too_large' | 'unavailable' | 'internal';
export type PublishAnswer = { msgId: string; pos?: string } | { error: { code: PublishErrorCode; message: string } };

const failure = (code: PublishErrorCode, message: string): PublishAnswer => ({ error: { code, message } });

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  const path = issue?.path.join('.') ?? '';
  return issue ? (path ? `${path}: ${issue.message}` : issue.message) : 'invalid request';
}

export interface PublishApiOptions {
  /** The same publish as a session's `send` (src/durable/publish.ts through the node's Delivery). */
  publish: (message: ChatMessage) => Promise<Published>;
  log: Logger;
  /** The largest request body, in bytes (MAX_MESSAGE_BYTES). */
  maxBytes: number;
  /** When set, HTTP `POST /api/publish` exists and needs this bearer token. Never logged. */
  apiToken?: string;
}

/** The API's answer to one request body (bytes as received). */
export async function publishFrom(raw: Uint8Array, options: PublishApiOptions): Promise<PublishAnswer> {
  if (raw.byteLength > options.maxBytes) return failure('too_large', `larger than ${options.maxBytes} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch {
    return failure('bad_request', 'body is not JSON');
  }
  const parsed = publishRequest.safeParse(value);
  if (!parsed.success) return failure('bad_request', describe(parsed.error));
  const { to, from, key } = parsed.data;
  try {
    const published = await options.publish({ origin: '', from, to: to as Destination, body: parsed.data.body, system: true, key });
    // A repeated key answers the first message's msgId and pos; whether it was a repeat is not the API's business.
    return published.pos === undefined ? { msgId: published.msgId } : { msgId: published.msgId, pos: published.pos };
  } catch (err) {
    // NATS or the message store could not take it now (no responders, timeout, closed connection).
    options.log.warn({ error: errorSummary(err) }, 'publish api could not publish');
    return failure('unavailable', 'the message could not be stored or published now');
  }
}

/** Serves the NATS side: one subscription in the gateways' queue group. */
export function servePublishApi(nc: NatsConnection, options: PublishApiOptions): Subscription {
  const guard = new CallbackGuard(options.log);
  return nc.subscribe(subjects.apiPublish, {
    queue: GATEWAY_QUEUE,
    callback: guard.callback('publish-api', (msg: Msg) => {
      // Answers go only into the api role's inboxes (or nats.js's default one, on an open server).
      if (!msg.reply || !(msg.reply.startsWith(`${inboxPrefix('api')}.`) || msg.reply.startsWith('_INBOX.'))) return;
      void publishFrom(msg.data, options).then((answer) => msg.respond(JSON.stringify(answer)));
    }),
  });
}

const statusOf: Record<PublishErrorCode, number> = { bad_request: 400, too_large: 413, unavailable: 503, internal: 500 };

/** Reads at most `max` bytes of the body; undefined once it is larger (the rest is not read). */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        resolve(undefined);
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** `POST /api/publish`: 404 without API_TOKEN, 405, 401, 413, 400, 503, or 200 `{msgId}`. */
export async function handlePublishHttp(req: IncomingMessage, res: ServerResponse, options: PublishApiOptions): Promise<void> {
  if (!options.apiToken) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return;
  }
  const given = bearerToken(req) ?? '';
  if (!sameSecret(given, options.apiToken)) {
    res.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
    return;
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > options.maxBytes) {
    res.setHeader('connection', 'close');
    json(res, 413, failure('too_large', `larger than ${options.maxBytes} bytes`));
    return;
  }
  const raw = await readBody(req, options.maxBytes);
  if (raw === undefined) {
    res.setHeader('connection', 'close');
    json(res, 413, failure('too_large', `larger than ${options.maxBytes} bytes`));
    return;
  }
  const answer = await publishFrom(raw, options);
  json(res, 'error' in answer ? statusOf[answer.error.code] : 200, answer);
}
