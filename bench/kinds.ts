/**
 * The bench's targets and the requests and answers of its load generator (bench/loadgen.ts), in a
 * module of their own: importing loadgen.ts would run a load generator.
 */
/** The targets: chatgate in both delivery modes, the bare relays, Socket.IO with Redis. */
export const TARGETS = ['ephemeral', 'durable', 'relay', 'relay-js', 'socketio'] as const;
export type Target = (typeof TARGETS)[number];

export interface ConnectRequest {
  target: Target;
  /** Connection i goes to urls[i % urls.length]. */
  urls: string[];
  users: string[];
  /** Handshakes in flight at once. */
  concurrency: number;
}
export interface ConnectResult {
  opened: number;
  failed: number;
  degraded: number;
  elapsedMs: number;
  firstError?: string;
}
export interface UsersRequest {
  target: Target;
  /** `a` connects to urls[0], `b` to urls[1]; each sends to the other (two directed links). */
  urls: [string, string];
  pairs: Array<{ a: string; b: string }>;
}
export interface RoomsRequest {
  target: Target;
  /** Rooms of members taken from this target's paired users (in the order opened), each room alternating nodes. */
  rooms: Array<{ room: string; members: number[] }>;
}
export interface Counts {
  sent: number;
  acked: number;
  received: number;
  errors: number;
  closes: number;
  /** Sends that waited for the pacer (the default per-session rate). */
  paced: number;
  firstError?: string;
}
export interface OpenLoopRequest {
  target: Target;
  /** Messages per second from this process. */
  rate: number;
  warmupMs: number;
  durationMs: number;
  bodyBytes: number;
  /** Latency: the first `links` directed links carry the load. */
  links?: number;
}
export interface OpenLoopResult extends Counts {
  /** Microseconds, hdr-histogram-js compressed base64. */
  histogram: string;
  /** Sent in the measured window, and how many deliveries of those arrived (room messages: one per member). */
  measuredSent: number;
  measuredReceived: number;
  /** Deliveries expected of the measured sends (room messages: members - 1 each). */
  measuredExpected: number;
}
