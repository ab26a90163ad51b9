/**
 * The lifecycle of one chatgate client (the SDK in src/client/): getting a token, opening a
 * socket, authenticating, being open, and reconnecting with backoff when the socket is lost.
 *
 *   connecting.token → connecting.socket → connecting.authenticating → open
 *         ↑                                                              │ socket.closed
 *         └──────────────── reconnecting (full-jitter backoff) ←─────────┘
 *   any state ── client.close, or a close code that retrying cannot fix ──→ closed
 *
 * - Which close codes retry: 1001, 1006, 1011, 1013, 4009, 4008 and any code not listed below
 *   reconnect with backoff. 4002 (token expired) reconnects with a fresh token. 4001 (invalid
 *   token) reconnects once with a fresh token; a second 4001 before the next `welcome` stops.
 *   1002, 1003, 1007, 1008 and 1009 stop at once: the client sent something the node will refuse
 *   again, so a retry loop would only repeat it.
 * - Backoff: full jitter, `random() × min(maxDelayMs, minDelayMs × 2^attempt)`, where `attempt`
 *   counts the connects that failed since the last `welcome` (centrifuge-js's choice: a fleet's
 *   clients cut at once spread evenly over the whole window, not in waves). Each attempt takes
 *   the next of `urls`, round robin.
 * - A connect (token, socket, `welcome`) that takes longer than `connectTimeoutMs` is abandoned
 *   and counts as a failed attempt.
 * - Tokens: one is fetched when there is none, when the last one was refused (4001, 4002) or is
 *   past its `exp`, and when the node says `expiring` (then sent as `refresh`).
 *
 * Pure: no I/O, clock or randomness of its own. Time enters through the named delays and the
 * `now` input, jitter through the `random` input; sockets and the token function are the named
 * actions that src/client/ provides with `machine.provide(...)`. Positions, rooms and the outbox
 * are the SDK's (src/client/), which acts when this machine announces `open`.
 */
import { assign, setup } from 'xstate';

export interface ClientMachineOptions {
  /** The first backoff cap; doubled per failed attempt. @default 500 */
  minDelayMs: number;
  /** The largest backoff cap. @default 20000 */
  maxDelayMs: number;
  /** How long one connect (token, socket, welcome) may take before it is abandoned. @default 10000 */
  connectTimeoutMs: number;
}

export const defaultClientMachineOptions: Readonly<ClientMachineOptions> = Object.freeze({
  minDelayMs: 500,
  maxDelayMs: 20_000,
  connectTimeoutMs: 10_000,
});

export interface ClientMachineInput {
  /** Gateway WebSocket URLs, tried in turn. */
  urls: readonly string[];
  /** Milliseconds since the epoch; `Date.now` in production. */
  now: () => number;
  /** A number in [0, 1); `Math.random` in production. */
  random: () => number;
  options?: Partial<ClientMachineOptions>;
}

/** Close codes after which retrying cannot help (see the module comment). */
export const TERMINAL_CLOSE_CODES: readonly number[] = [1002, 1003, 1007, 1008, 1009];
/** Close codes that mean "the token": fetch a fresh one before the next connect. */
export const TOKEN_CLOSE_CODES: readonly number[] = [4001, 4002];

export interface ClientContext {
  urls: readonly string[];
  options: ClientMachineOptions;
  now: () => number;
  random: () => number;
  /** Index into `urls` of the current (or next) attempt. */
  urlIndex: number;
  /** Connects that failed since the last `welcome`. */
  attempt: number;
  /** The wait before the next attempt, drawn on entering `reconnecting`. */
  delayMs: number;
  /** The last draw of `random`, kept for the record (replay reads it back). */
  jitter: number;
  token: string | undefined;
  /** The node refused the token (4001, 4002): get another before connecting. */
  tokenStale: boolean;
  /** Its `exp` (seconds) as the node said it in `welcome`, `expiring` or a refresh `ack`. */
  exp: number | undefined;
  /** 4001 closes since the last `welcome`. */
  invalidTokenCloses: number;
  session: string | undefined;
  node: string | undefined;
  lastClose: { code: number; reason: string } | undefined;
  /** Why the client stopped for good, when it did not stop by `client.close`. */
  failure: { code: number; reason: string } | undefined;
}

export type ClientEvent =
  | { type: 'token.ok'; token: string }
  | { type: 'token.failed'; reason: string }
  | { type: 'socket.opened' }
  | { type: 'socket.closed'; code: number; reason: string }
  | { type: 'frame.welcome'; session: string; node: string; exp: number }
  | { type: 'frame.expiring'; exp: number }
  | { type: 'refresh.ok'; exp: number }
  | { type: 'client.close' };

const closeOf = (event: ClientEvent) =>
  event.type === 'socket.closed' ? { code: event.code, reason: event.reason } : { code: 1006, reason: 'connect timed out' };

export const clientMachine = setup({
  types: {
    context: {} as ClientContext,
    events: {} as ClientEvent,
    input: {} as ClientMachineInput,
  },
  actions: {
    // Effects, provided by src/client/ (these stubs are what the diagrams and replay see).
    /** Call the application's token function; answer with `token.ok` or `token.failed`. */
    fetchToken: (_, _params: { reason: 'connect' | 'refresh' }) => {},
    /** Open a WebSocket to `url`; report `socket.opened` and `socket.closed`. */
    openSocket: (_, _params: { url: string; attempt: number }) => {},
    /** Send the `auth` frame (with the inbox's `since`, which the SDK knows). */
    sendAuth: (_, _params: { token: string }) => {},
    /** Send a `refresh` frame with the new token. */
    sendRefresh: (_, _params: { token: string }) => {},
    /** Close the current socket (if any) and forget it: its events no longer count. */
    closeSocket: (_, _params: { code: number; reason: string }) => {},
    /** The session is open: the SDK re-joins rooms and re-sends its outbox. */
    announceOpen: (_, _params: { session: string; node: string }) => {},
    /** The socket is gone; the next attempt comes after `delayMs`. */
    announceReconnect: (_, _params: { delayMs: number; attempt: number; jitter: number; code: number; reason: string }) => {},
    /** The client has stopped for good; `failure` says why unless the application closed it. */
    announceClosed: (_, _params: { failure: { code: number; reason: string } | undefined }) => {},

    storeToken: assign({
      token: ({ event }) => (event.type === 'token.ok' ? event.token : undefined),
      tokenStale: false,
    }),
    acceptWelcome: assign(({ event }) =>
      event.type === 'frame.welcome'
        ? { session: event.session, node: event.node, exp: event.exp, attempt: 0, invalidTokenCloses: 0 }
        : {},
    ),
    storeExp: assign({
      exp: ({ context, event }) => (event.type === 'frame.expiring' || event.type === 'refresh.ok' ? event.exp : context.exp),
    }),
    recordClose: assign(({ context, event }) => {
      const close = closeOf(event);
      return {
        lastClose: close,
        tokenStale: context.tokenStale || TOKEN_CLOSE_CODES.includes(close.code),
        invalidTokenCloses: context.invalidTokenCloses + (close.code === 4001 ? 1 : 0),
      };
    }),
    recordTokenFailure: assign({
      lastClose: ({ event }) => ({ code: 0, reason: event.type === 'token.failed' ? `token: ${event.reason}` : 'token' }),
    }),
    recordFailure: assign({ failure: ({ event }) => closeOf(event) }),
    /** Full jitter over the capped exponential, then the next URL. */
    drawDelay: assign(({ context }) => {
      const cap = Math.min(context.options.maxDelayMs, context.options.minDelayMs * 2 ** Math.min(context.attempt, 30));
      const jitter = context.random();
      return {
        jitter,
        delayMs: Math.floor(jitter * cap),
        attempt: context.attempt + 1,
        urlIndex: (context.urlIndex + 1) % context.urls.length,
      };
    }),
  },
  guards: {
    /** No token, or one the node refused, or one past its `exp`. */
    needsToken: ({ context }) =>
      context.token === undefined ||
      context.tokenStale ||
      (context.exp !== undefined && context.now() >= context.exp * 1000),
    /** A close that retrying cannot fix, or a second 4001 before any `welcome`. */
    isTerminal: ({ context, event }) => {
      const { code } = closeOf(event);
      return TERMINAL_CLOSE_CODES.includes(code) || (code === 4001 && context.invalidTokenCloses >= 1);
    },
  },
  delays: {
    backoff: ({ context }) => context.delayMs,
    connectTimeout: ({ context }) => context.options.connectTimeoutMs,
  },
}).createMachine({
  id: 'client',
  context: ({ input }) => ({
    urls: input.urls,
    options: { ...defaultClientMachineOptions, ...input.options },
    now: input.now,
    random: input.random,
    urlIndex: 0,
    attempt: 0,
    delayMs: 0,
    jitter: 0,
    token: undefined,
    tokenStale: false,
    exp: undefined,
    invalidTokenCloses: 0,
    session: undefined,
    node: undefined,
    lastClose: undefined,
    failure: undefined,
  }),
  initial: 'connecting',
  states: {
    connecting: {
      initial: 'choosing',
      after: {
        connectTimeout: {
          target: 'reconnecting',
          actions: ['recordClose', { type: 'closeSocket', params: { code: 1000, reason: 'connect timed out' } }],
        },
      },
      on: {
        'socket.closed': [
          { guard: 'isTerminal', target: 'closed', actions: ['recordClose', 'recordFailure'] },
          { target: 'reconnecting', actions: 'recordClose' },
        ],
        'client.close': { target: '#client.closed', actions: { type: 'closeSocket', params: { code: 1000, reason: 'client closed' } } },
      },
      states: {
        choosing: {
          always: [{ guard: 'needsToken', target: 'token' }, { target: 'socket' }],
        },
        token: {
          entry: { type: 'fetchToken', params: { reason: 'connect' } },
          on: {
            'token.ok': { target: 'socket', actions: 'storeToken' },
            'token.failed': { target: '#client.reconnecting', actions: 'recordTokenFailure' },
          },
        },
        socket: {
          entry: {
            type: 'openSocket',
            params: ({ context }) => ({ url: context.urls[context.urlIndex]!, attempt: context.attempt }),
          },
          on: {
            'socket.opened': {
              target: 'authenticating',
              actions: { type: 'sendAuth', params: ({ context }) => ({ token: context.token! }) },
            },
          },
        },
        authenticating: {
          on: {
            'frame.welcome': { target: '#client.open', actions: 'acceptWelcome' },
          },
        },
      },
    },
    open: {
      entry: {
        type: 'announceOpen',
        params: ({ context }) => ({ session: context.session!, node: context.node! }),
      },
      initial: 'idle',
      on: {
        'socket.closed': [
          { guard: 'isTerminal', target: 'closed', actions: ['recordClose', 'recordFailure'] },
          { target: 'reconnecting', actions: 'recordClose' },
        ],
        'frame.expiring': { target: '.refreshing', actions: 'storeExp' },
        'refresh.ok': { actions: 'storeExp' },
        'client.close': { target: '#client.closed', actions: { type: 'closeSocket', params: { code: 1000, reason: 'client closed' } } },
      },
      states: {
        idle: {},
        refreshing: {
          entry: { type: 'fetchToken', params: { reason: 'refresh' } },
          on: {
            'token.ok': {
              target: 'idle',
              actions: ['storeToken', { type: 'sendRefresh', params: ({ event }) => ({ token: event.token }) }],
            },
            // The node closes with 4002 at `exp`; the reconnect then asks for a token again.
            'token.failed': { target: 'idle' },
          },
        },
      },
    },
    reconnecting: {
      entry: [
        'drawDelay',
        {
          type: 'announceReconnect',
          params: ({ context }) => ({
            delayMs: context.delayMs,
            attempt: context.attempt,
            jitter: context.jitter,
            code: context.lastClose?.code ?? 0,
            reason: context.lastClose?.reason ?? '',
          }),
        },
      ],
      after: { backoff: 'connecting' },
      on: {
        'client.close': { target: '#client.closed', actions: { type: 'closeSocket', params: { code: 1000, reason: 'client closed' } } },
      },
    },
    closed: {
      type: 'final',
      entry: { type: 'announceClosed', params: ({ context }) => ({ failure: context.failure }) },
    },
  },
});

export type ClientMachine = typeof clientMachine;
