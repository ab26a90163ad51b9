/**
 * Every command-line option of every command, in one table: its flag, its environment form and
 * its default. Values come from the flag, else the environment variable, else the default
 * (commander does the lookup), are validated with zod, frozen, and passed down. A bad value is
 * one line on stderr and exit code 2 (see cli.ts).
 */
import { z } from 'zod';
import { isValidId } from './subjects.ts';
import type { NatsCredentials } from './bus/connection.ts';
import { defaults } from './defaults.ts';

export interface OptionSpec {
  /** Commander's flag syntax, e.g. `--port <n>`. */
  flag: string;
  env: string;
  description: string;
  /** As the user would type it; undefined means "not set". */
  default?: string;
  schema: z.ZodType;
}

const port = z.coerce.number().int().min(0).max(65535);
const portOrRandom = z.coerce.number().int().min(-1).max(65535);
const positiveInt = z.coerce.number().int().positive();
const seconds = z.coerce.number().int();
const text = z.string().min(1);
const url = z.string().url();
const list = z
  .string()
  .transform((s) => s.split(',').map((part) => part.trim()).filter(Boolean));

/** `TRUST_PROXY`: a count of trusted proxies; `true` and `false` still mean 1 and 0. */
const trustProxyCount = z
  .string()
  .refine((v) => v === 'true' || v === 'false' || /^\d{1,2}$/.test(v), 'a number of trusted proxies (0–99), or true/false')
  .transform((v) => (v === 'true' ? 1 : v === 'false' ? 0 : Number(v)));

const clockTolerance = {
  flag: '--clock-tolerance-s <s>',
  env: 'CLOCK_TOLERANCE_S',
  description: 'clock skew allowed when checking exp and nbf, in seconds (auth service and local checks)',
  default: String(defaults.clockToleranceS),
  schema: z.coerce.number().int().min(0).max(300),
} satisfies OptionSpec;

const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

const nats = {
  flag: '--nats <url>',
  env: 'NATS_URL',
  description: 'NATS server URL(s), comma-separated',
  default: defaults.natsUrl,
  schema: list.pipe(z.array(url).min(1)),
} satisfies OptionSpec;
const home = {
  flag: '--home <dir>',
  env: 'CHATGATE_HOME',
  description: 'where the signing keys live (made on first use)',
  default: defaults.home,
  schema: text,
} satisfies OptionSpec;
const level = {
  flag: '--log-level <level>',
  env: 'LOG_LEVEL',
  description: 'trace, debug, info, warn, error, fatal or silent',
  default: 'info',
  schema: logLevel,
} satisfies OptionSpec;
const issuer = {
  flag: '--issuer <iss>',
  env: 'ISSUER',
  description: 'the iss every token must carry',
  default: 'chatgate',
  schema: text,
} satisfies OptionSpec;
const audience = {
  flag: '--audience <aud>',
  env: 'AUDIENCE',
  description: 'the audience every token must include',
  default: 'chatgate',
  schema: text,
} satisfies OptionSpec;

/**
 * How a process authenticates to NATS when the deployment is not one `chatgate nats` made (whose
 * role credentials are found in CHATGATE_HOME without any of these). See nats-connection.ts and
 * docs/security.md. Secrets: prefer the variables, flags show in `ps`.
 */
const natsCredentialOptions = {
  natsCreds: {
    flag: '--nats-creds <file>',
    env: 'NATS_CREDS',
    description: 'a NATS .creds file (user JWT and nkey seed) to connect with',
    schema: text,
  },
  natsNkeySeedFile: {
    flag: '--nats-nkey-seed-file <file>',
    env: 'NATS_NKEY_SEED_FILE',
    description: 'a file holding a NATS user nkey seed (mode 0600) to connect with',
    schema: text,
  },
  natsUser: { flag: '--nats-user <name>', env: 'NATS_USER', description: 'NATS user name (with NATS_PASSWORD)', schema: text },
  natsPassword: {
    flag: '--nats-password <secret>',
    env: 'NATS_PASSWORD',
    description: 'NATS password (prefer the variable: flags show in ps)',
    schema: text,
  },
  natsToken: {
    flag: '--nats-token <secret>',
    env: 'NATS_TOKEN',
    description: 'NATS authentication token (prefer the variable: flags show in ps)',
    schema: text,
  },
  natsTlsCa: { flag: '--nats-tls-ca <file>', env: 'NATS_TLS_CA', description: 'CA certificate that signed the NATS server’s (PEM)', schema: text },
  natsTlsCert: { flag: '--nats-tls-cert <file>', env: 'NATS_TLS_CERT', description: 'client certificate for NATS (PEM, with NATS_TLS_KEY)', schema: text },
  natsTlsKey: { flag: '--nats-tls-key <file>', env: 'NATS_TLS_KEY', description: 'key of the client certificate for NATS (PEM)', schema: text },
} satisfies Record<string, OptionSpec>;
const maxTokenLifetimeS = {
  flag: '--max-token-lifetime-s <seconds>',
  env: 'MAX_TOKEN_LIFETIME_S',
  description:
    'longest token lifetime (exp - iat) accepted; tokens need iat; revocations are kept this long plus 15 minutes (same value on every auth service and gateway)',
  default: '86400',
  schema: positiveInt,
} satisfies OptionSpec;

const adminToken = {
  flag: '--admin-token <secret>',
  env: 'ADMIN_TOKEN',
  description: 'the token that opens the admin port’s inspector page (prefer the variable: flags show in ps)',
  schema: z.string().min(16, 'use at least 16 characters'),
} satisfies OptionSpec;

/** Durable delivery (src/durable/, docs/durability.md), for `gateway` and `dev`. */
const deliveryOptions = {
  delivery: {
    flag: '--delivery <mode>',
    env: 'DELIVERY',
    description: 'durable: store each chat message in JetStream before its ack (positions, resume, history, keys); ephemeral: core NATS, at most once',
    default: defaults.delivery,
    schema: z.enum(['durable', 'ephemeral']),
  },
  historyMaxAgeS: {
    flag: '--history-max-age-s <s>',
    env: 'HISTORY_MAX_AGE_S',
    description: 'how long the message streams keep a message, in seconds (set when a stream is made)',
    default: String(defaults.historyMaxAgeS),
    schema: positiveInt,
  },
  historyMaxPerTarget: {
    flag: '--history-max-per-target <n>',
    env: 'HISTORY_MAX_PER_TARGET',
    description: 'messages kept per user inbox and per room (set when a stream is made)',
    default: String(defaults.historyMaxPerTarget),
    schema: positiveInt.max(100_000),
  },
  dedupeWindowS: {
    flag: '--dedupe-window-s <s>',
    env: 'DEDUPE_WINDOW_S',
    description: 'how long a send key deduplicates, in seconds (set when a stream is made)',
    default: String(defaults.dedupeWindowS),
    schema: positiveInt.max(86_400),
  },
  streamReplicas: {
    flag: '--stream-replicas <n>',
    env: 'STREAM_REPLICAS',
    description: 'copies of each message stream: 1 on one server, 3 on a cluster (set when a stream is made)',
    default: String(defaults.streamReplicas),
    schema: z.coerce.number().int().min(1).max(5),
  },
} satisfies Record<string, OptionSpec>;

const gatewayLimits = {
  authTimeoutMs: {
    flag: '--auth-timeout-ms <ms>',
    env: 'AUTH_TIMEOUT_MS',
    description: 'time a new socket has to authenticate before close 4008',
    default: String(defaults.authTimeoutMs),
    schema: positiveInt,
  },
  authRequestTimeoutMs: {
    flag: '--auth-request-timeout-ms <ms>',
    env: 'AUTH_REQUEST_TIMEOUT_MS',
    description: 'time one auth check over NATS may take (also the breaker’s slow-call bound)',
    default: String(defaults.authRequestTimeoutMs),
    schema: positiveInt,
  },
  maxMessageBytes: {
    flag: '--max-message-bytes <n>',
    env: 'MAX_MESSAGE_BYTES',
    description: 'largest client frame; larger closes with 1009',
    default: String(defaults.maxMessageBytes),
    schema: positiveInt,
  },
  maxBufferedBytes: {
    flag: '--max-buffered-bytes <n>',
    env: 'MAX_BUFFERED_BYTES',
    description: 'outgoing bytes a socket may hold; more closes with 4009',
    default: String(defaults.maxBufferedBytes),
    schema: positiveInt,
  },
  allowedOrigins: {
    flag: '--allowed-origins <list>',
    env: 'ALLOWED_ORIGINS',
    description: 'comma-separated Origins allowed to connect (all when unset)',
    schema: list,
  },
  heartbeatIntervalMs: {
    flag: '--heartbeat-interval-ms <ms>',
    env: 'HEARTBEAT_INTERVAL_MS',
    description: 'how often sockets are pinged; a missed pong ends the session',
    default: String(defaults.heartbeatIntervalMs),
    schema: positiveInt,
  },
  expiryWarningMs: {
    flag: '--expiry-warning-ms <ms>',
    env: 'EXPIRY_WARNING_MS',
    description: 'how long before token expiry the expiring frame is sent',
    default: '30000',
    schema: z.coerce.number().int().min(0),
  },
  degradedPolicy: {
    flag: '--degraded-policy <policy>',
    env: 'DEGRADED_POLICY',
    description: 'when the auth service cannot be asked: local (verify with cached keys) or reject (close 1013)',
    default: String(defaults.degradedPolicy),
    schema: z.enum(['local', 'reject']),
  },
  recheckPerSecond: {
    flag: '--recheck-per-second <n>',
    env: 'RECHECK_PER_SECOND',
    description: 'degraded sessions re-checked per second once the auth service is back',
    default: String(defaults.recheckPerSecond),
    schema: positiveInt,
  },
  sendsPerSecond: {
    flag: '--sends-per-second <n>',
    env: 'SENDS_PER_SECOND',
    description: 'sends per second per session (token bucket refill); excess gets error rate_limited',
    default: '50',
    schema: positiveInt,
  },
  sendBurst: {
    flag: '--send-burst <n>',
    env: 'SEND_BURST',
    description: 'sends a session may make at once (token bucket size)',
    default: '100',
    schema: positiveInt,
  },
  signalsPerSecond: {
    flag: '--signals-per-second <n>',
    env: 'SIGNALS_PER_SECOND',
    description: 'signals per second per session (their own token bucket refill); excess gets error rate_limited',
    default: '10',
    schema: positiveInt,
  },
  signalBurst: {
    flag: '--signal-burst <n>',
    env: 'SIGNAL_BURST',
    description: 'signals a session may send at once (token bucket size)',
    default: '20',
    schema: positiveInt,
  },
  presenceMaxUsers: {
    flag: '--presence-max-users <n>',
    env: 'PRESENCE_MAX_USERS',
    description: 'the most users a presence answer lists (its count is exact)',
    default: String(defaults.presenceMaxUsers),
    schema: positiveInt,
  },
  presenceHeartbeatMs: {
    flag: '--presence-heartbeat-ms <ms>',
    env: 'PRESENCE_HEARTBEAT_MS',
    description: 'how often a gateway tells the others it is alive (presence)',
    default: String(defaults.presenceHeartbeatMs),
    schema: positiveInt,
  },
  presenceNodeTimeoutMs: {
    flag: '--presence-node-timeout-ms <ms>',
    env: 'PRESENCE_NODE_TIMEOUT_MS',
    description: 'a gateway not heard for this long is dead: its users leave every room (left events)',
    default: String(defaults.presenceNodeTimeoutMs),
    schema: positiveInt,
  },
  apiToken: {
    flag: '--api-token <secret>',
    env: 'API_TOKEN',
    description: 'when set, POST /api/publish on the gateway port needs Authorization: Bearer <secret>; unset, it is 404',
    schema: z.string().min(16, 'use at least 16 characters'),
  },
  maxRoomsPerSession: {
    flag: '--max-rooms-per-session <n>',
    env: 'MAX_ROOMS_PER_SESSION',
    description: 'rooms one session may have joined; one more join is forbidden',
    default: '100',
    schema: positiveInt,
  },
  maxConnections: {
    flag: '--max-connections <n>',
    env: 'MAX_CONNECTIONS',
    description: 'connections per node; more are closed with 1013',
    default: String(defaults.maxConnections),
    schema: positiveInt,
  },
  handshakesPerIpPerSecond: {
    flag: '--handshakes-per-ip-per-second <n>',
    env: 'HANDSHAKES_PER_IP_PER_SECOND',
    description: 'WebSocket handshakes per second from one address; more get HTTP 429',
    default: String(defaults.handshakesPerIpPerSecond),
    schema: positiveInt,
  },
  trustProxy: {
    flag: '--trust-proxy <n>',
    env: 'TRUST_PROXY',
    description: 'proxies in front of the node: the client address is the X-Forwarded-For entry that many from the right (true = 1, false = 0)',
    default: String(defaults.trustProxy),
    schema: trustProxyCount,
  },
  sendBytesPerSecond: {
    flag: '--send-bytes-per-second <n>',
    env: 'SEND_BYTES_PER_SECOND',
    description: 'bytes of send frames per second per session (byte bucket refill); excess gets error rate_limited',
    default: String(defaults.sendBytesPerSecond),
    schema: positiveInt,
  },
  sendBytesBurst: {
    flag: '--send-bytes-burst <n>',
    env: 'SEND_BYTES_BURST',
    description: 'bytes of send frames a session may send at once (byte bucket size; at least MAX_MESSAGE_BYTES)',
    default: String(defaults.sendBytesBurst),
    schema: positiveInt,
  },
  userSendBytesPerSecond: {
    flag: '--user-send-bytes-per-second <n>',
    env: 'USER_SEND_BYTES_PER_SECOND',
    description: 'bytes of send frames per second of all of one user\'s sessions on this node together; excess gets error rate_limited',
    default: String(defaults.userSendBytesPerSecond),
    schema: positiveInt,
  },
  userSendBytesBurst: {
    flag: '--user-send-bytes-burst <n>',
    env: 'USER_SEND_BYTES_BURST',
    description: 'bytes of send frames all of one user\'s sessions on this node may send at once (at least MAX_MESSAGE_BYTES, below MAX_BUFFERED_BYTES)',
    default: String(defaults.userSendBytesBurst),
    schema: positiveInt,
  },
  maxStrikes: {
    flag: '--max-strikes <n>',
    env: 'MAX_STRIKES',
    description: 'refused frames (malformed, forbidden, rate-limited, …) a session may send; one more closes with 1008',
    default: String(defaults.maxStrikes),
    schema: z.coerce.number().int().min(0),
  },
  maxSessionsPerUser: {
    flag: '--max-sessions-per-user <n>',
    env: 'MAX_SESSIONS_PER_USER',
    description: 'sessions one user may have on this node; one more closes with 1013',
    default: String(defaults.maxSessionsPerUser),
    schema: positiveInt,
  },
  maxSessionsPerIp: {
    flag: '--max-sessions-per-ip <n>',
    env: 'MAX_SESSIONS_PER_IP',
    description: 'sessions one client address may have on this node; one more upgrade gets HTTP 429',
    default: String(defaults.maxSessionsPerIp),
    schema: positiveInt,
  },
  headersTimeoutMs: {
    flag: '--headers-timeout-ms <ms>',
    env: 'HEADERS_TIMEOUT_MS',
    description: 'time a request (an upgrade too) may take to send its headers; then HTTP 408',
    default: String(defaults.headersTimeoutMs),
    schema: positiveInt,
  },
  requestTimeoutMs: {
    flag: '--request-timeout-ms <ms>',
    env: 'REQUEST_TIMEOUT_MS',
    description: 'time a plain HTTP request may take in all',
    default: String(defaults.requestTimeoutMs),
    schema: positiveInt,
  },
  clockToleranceS: clockTolerance,
  metricsToken: {
    flag: '--metrics-token <secret>',
    env: 'METRICS_TOKEN',
    description: 'when set, GET /metrics needs Authorization: Bearer <secret>',
    schema: z.string().min(16, 'use at least 16 characters'),
  },
  issuer,
  audience,
  shutdownTimeoutMs: {
    flag: '--shutdown-timeout-ms <ms>',
    env: 'SHUTDOWN_TIMEOUT_MS',
    description: 'the longest a shutdown (SIGTERM, SIGINT) may take, drain included: the process exits before it',
    default: String(defaults.shutdownTimeoutMs),
    schema: positiveInt,
  },
  drainGraceMs: {
    flag: '--drain-grace-ms <ms>',
    env: 'DRAIN_GRACE_MS',
    description: 'on SIGTERM: how long /readyz answers 503 while the node still serves, so a load balancer can notice',
    default: String(defaults.drainGraceMs),
    schema: z.coerce.number().int().min(0),
  },
  drainWindowMs: {
    flag: '--drain-window-ms <ms>',
    env: 'DRAIN_WINDOW_MS',
    description: 'on SIGTERM, after the grace: how long the 1001 closes of open sessions are spread over (new upgrades get 503)',
    default: String(defaults.drainWindowMs),
    schema: z.coerce.number().int().min(0),
  },
  maxTokenLifetimeS,
} satisfies Record<string, OptionSpec>;

/** Recording of what the node's actors receive (src/observe/recording.ts), for `gateway` and `dev`. */
const recordingOptions = {
  recordTo: {
    flag: '--record-to <target>',
    env: 'RECORD_TO',
    description: 'record what connection actors and the breaker receive: file:PATH (appended) or nats (chatgate.v1.recording.<node>); off when unset',
    schema: z
      .string()
      .refine((s) => s === 'nats' || /^file:./.test(s), 'nats, or file:PATH')
      .transform((s) => (s === 'nats' ? { to: 'nats' as const } : { to: 'file' as const, path: s.slice('file:'.length) })),
  },
  recordUser: {
    flag: '--record-user <id>',
    env: 'RECORD_USER',
    description: 'record only this user’s connections (and the breaker)',
    schema: z.string().refine(isValidId, 'must be 1–256 characters of well-formed Unicode'),
  },
  recordSession: {
    flag: '--record-session <id>',
    env: 'RECORD_SESSION',
    description: 'record only this session’s connection (and the breaker)',
    schema: text,
  },
} satisfies Record<string, OptionSpec>;

/** The options of each command, by the key the command's code reads. */
export const commandOptions = {
  gateway: {
    nats,
    home: { ...home, description: 'where `chatgate nats` wrote the bus credentials (the gateway uses nats/gateway.nk)' },
    ...natsCredentialOptions,
    port: { flag: '--port <n>', env: 'PORT', description: 'HTTP/WebSocket port', default: String(defaults.port), schema: port },
    host: { flag: '--host <addr>', env: 'HOST', description: 'address to listen on', default: defaults.host, schema: text },
    nodeId: {
      flag: '--node-id <id>',
      env: 'NODE_ID',
      description: 'this node’s name (default: hostname and a random suffix)',
      schema: text,
    },
    ...gatewayLimits,
    ...deliveryOptions,
    ...recordingOptions,
    adminPort: {
      flag: '--admin-port <n>',
      env: 'ADMIN_PORT',
      description: 'port of the admin server (inspector page); off when unset, needs ADMIN_TOKEN',
      schema: port,
    },
    adminHost: {
      flag: '--admin-host <addr>',
      env: 'ADMIN_HOST',
      description: 'address the admin server listens on',
      default: '127.0.0.1',
      schema: text,
    },
    adminToken,
    logLevel: level,
  },
  auth: {
    nats,
    home,
    ...natsCredentialOptions,
    issuer,
    audience,
    jwksUrl: {
      flag: '--jwks-url <url>',
      env: 'JWKS_URL',
      description: 'verify against an identity provider’s JWKS instead of the dev keys',
      schema: url,
    },
    clockToleranceS: clockTolerance,
    maxTokenLifetimeS,
    revocationReplicas: {
      flag: '--revocation-replicas <n>',
      env: 'REVOCATION_REPLICAS',
      description: 'copies of the revocations bucket (JetStream): 1 on one server, 3 on a 3-node cluster',
      default: '1',
      schema: z.coerce.number().int().min(1).max(5),
    },
    logLevel: level,
  },
  token: {
    sub: {
      flag: '--sub <user>',
      env: 'TOKEN_SUB',
      description: 'the user id (1–256 characters)',
      schema: z.string().refine(isValidId, 'must be 1–256 characters of well-formed Unicode'),
    },
    rooms: {
      flag: '--rooms <list>',
      env: 'TOKEN_ROOMS',
      description: 'comma-separated rooms the token grants, or * for every room',
      schema: list,
    },
    claims: {
      flag: '--claims <json>',
      env: 'TOKEN_CLAIMS',
      description: 'a JSON object of more claims, merged into the payload (e.g. {"rooms":{"news":"r","chat":"rw"}})',
      schema: z.string().transform((text, ctx) => {
        try {
          const value: unknown = JSON.parse(text);
          if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
        } catch {
          // Reported below as one line, like any bad option.
        }
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object' });
        return z.NEVER;
      }),
    },
    ttl: { flag: '--ttl <seconds>', env: 'TOKEN_TTL', description: 'lifetime; negative for an expired token', default: '3600', schema: seconds },
    aud: { flag: '--aud <aud>', env: 'TOKEN_AUD', description: 'audience', default: 'chatgate', schema: text },
    iss: { flag: '--iss <iss>', env: 'TOKEN_ISS', description: 'issuer', default: 'chatgate', schema: text },
    nbf: { flag: '--nbf <seconds>', env: 'TOKEN_NBF', description: 'not before, seconds from now', schema: seconds },
    jti: { flag: '--jti <id>', env: 'TOKEN_JTI', description: 'token id', schema: text },
    home,
  },
  jwks: { home },
  revoke: {
    nats,
    jti: { flag: '--jti <id>', env: 'REVOKE_JTI', description: 'revoke the token with this jti', schema: z.string().min(1).max(256) },
    sub: {
      flag: '--sub <user>',
      env: 'REVOKE_SUB',
      description: 'revoke every token of this user issued until now',
      schema: z.string().refine(isValidId, 'must be 1–256 characters of well-formed Unicode'),
    },
    home,
    ...natsCredentialOptions,
  },
  nats: {
    port: { flag: '--port <n>', env: 'NATS_PORT', description: 'client port (-1: any free port)', default: '4222', schema: portOrRandom },
    host: { flag: '--host <addr>', env: 'NATS_HOST', description: 'address to listen on', default: '127.0.0.1', schema: text },
    clusterPort: { flag: '--cluster-port <n>', env: 'NATS_CLUSTER_PORT', description: 'route port for a cluster', schema: portOrRandom },
    routes: { flag: '--routes <urls>', env: 'NATS_ROUTES', description: 'comma-separated nats-route:// URLs of other members', schema: list },
    jetstream: {
      flag: '--jetstream <dir>',
      env: 'NATS_JETSTREAM_DIR',
      description: 'JetStream store directory (JetStream is always on: revocations live there); default CHATGATE_HOME/jetstream',
      schema: text,
    },
    serverName: {
      flag: '--server-name <name>',
      env: 'NATS_SERVER_NAME',
      description: 'this server’s name: unique and stable per cluster member (default in a cluster: chatgate-<hostname>-<port>)',
      schema: text,
    },
    home: { ...home, description: 'where the bus credentials of each role are written (nats/<role>.nk, made on first use) and, by default, the JetStream store' },
    insecure: {
      flag: '--insecure',
      env: 'NATS_INSECURE',
      description: 'let any client connect and do anything on the bus (the old open server; any value of the variable turns it on)',
      schema: z.literal(true),
    },
  },
  dev: {
    port: { flag: '--port <n>', env: 'PORT', description: 'gateway HTTP/WebSocket port', default: '8080', schema: port },
    natsPort: { flag: '--nats-port <n>', env: 'NATS_PORT', description: 'port of the nats-server child', default: '4222', schema: portOrRandom },
    jetstream: {
      flag: '--jetstream <dir>',
      env: 'NATS_JETSTREAM_DIR',
      description: 'JetStream store directory of the nats-server child; default CHATGATE_HOME/jetstream',
      schema: text,
    },
    home,
    ...gatewayLimits,
    ...deliveryOptions,
    ...recordingOptions,
    adminPort: {
      flag: '--admin-port <n>',
      env: 'ADMIN_PORT',
      description: 'port of the admin server (inspector and demo chat pages) on 127.0.0.1; 0: any free port',
      default: '0',
      schema: port,
    },
    adminToken: { ...adminToken, description: 'the inspector’s admin token (default: a random one, printed in the banner)' },
    logLevel: level,
  },
  machines: {
    out: {
      flag: '--out <file>',
      env: 'MACHINES_OUT',
      description: 'where to write the state machine diagrams (Markdown with Mermaid)',
      default: 'docs/machines.md',
      schema: text,
    },
  },
  replay: {
    session: {
      flag: '--session <id>',
      env: 'REPLAY_SESSION',
      description: 'replay only the recording of this session',
      schema: text,
    },
    toleranceMs: {
      flag: '--tolerance-ms <ms>',
      env: 'REPLAY_TOLERANCE_MS',
      description: 'how far recorded and replayed times may differ (when a timer is due, computed delays)',
      default: '100',
      schema: z.coerce.number().min(0),
    },
  },
} satisfies Record<string, Record<string, OptionSpec>>;

export type CommandName = keyof typeof commandOptions;

type Parsed<T extends Record<string, OptionSpec>> = {
  readonly [K in keyof T]: T[K] extends { default: string } ? z.output<T[K]['schema']> : z.output<T[K]['schema']> | undefined;
};

export type CommandConfig<C extends CommandName> = Parsed<(typeof commandOptions)[C]>;

export class OptionError extends Error {}

/** Validates the raw values commander collected (flag, else env, else default) and freezes them. */
export function parseConfig<C extends CommandName>(command: C, raw: Record<string, unknown>): CommandConfig<C> {
  const specs = commandOptions[command] as Record<string, OptionSpec>;
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    const value = raw[key];
    if (value === undefined) continue;
    const result = spec.schema.safeParse(value);
    if (!result.success) {
      const flag = spec.flag.split(' ')[0];
      throw new OptionError(`invalid ${flag} (${spec.env}): ${result.error.issues[0]?.message ?? 'invalid value'}`);
    }
    out[key] = result.data;
  }
  return Object.freeze(out) as CommandConfig<C>;
}

/** The NATS_* credential settings of a command, checked for combinations that cannot work. */
export function natsCredentials(config: {
  natsCreds?: string;
  natsNkeySeedFile?: string;
  natsUser?: string;
  natsPassword?: string;
  natsToken?: string;
  natsTlsCa?: string;
  natsTlsCert?: string;
  natsTlsKey?: string;
}): NatsCredentials {
  const given = [
    config.natsCreds !== undefined && '--nats-creds (NATS_CREDS)',
    config.natsNkeySeedFile !== undefined && '--nats-nkey-seed-file (NATS_NKEY_SEED_FILE)',
    config.natsUser !== undefined && '--nats-user (NATS_USER)',
    config.natsToken !== undefined && '--nats-token (NATS_TOKEN)',
  ].filter(Boolean);
  if (given.length > 1) throw new OptionError(`give at most one NATS credential: ${given.join(', ')}`);
  if ((config.natsUser === undefined) !== (config.natsPassword === undefined)) {
    throw new OptionError('--nats-user (NATS_USER) and --nats-password (NATS_PASSWORD) go together');
  }
  if ((config.natsTlsCert === undefined) !== (config.natsTlsKey === undefined)) {
    throw new OptionError('--nats-tls-cert (NATS_TLS_CERT) and --nats-tls-key (NATS_TLS_KEY) go together');
  }
  return Object.freeze({
    credsFile: config.natsCreds,
    nkeySeedFile: config.natsNkeySeedFile,
    user: config.natsUser,
    password: config.natsPassword,
    token: config.natsToken,
    tlsCa: config.natsTlsCa,
    tlsCert: config.natsTlsCert,
    tlsKey: config.natsTlsKey,
  });
}
