/**
 * The gateway options the bench changes from their defaults, and why: every load generator
 * connects from 127.0.0.1, so the per-IP handshake limit (20/s) and session cap (1,000) would refuse almost all of them;
 * the idle phase may open more sessions than the default 10,000 per node in a longer run, and that
 * limit must never be what is measured; and the per-session send rate (50/s, burst 100) is exactly
 * what a saturation test exceeds. Everything else (auth, breaker, buffers, heartbeats, metrics)
 * stays at its default.
 */
import type { GatewayOptions } from '../src/gateway/gateway.ts';

export const benchGatewayOptions = {
  handshakesPerIpPerSecond: 1_000_000_000,
  maxConnections: 1_000_000,
  // Every bench client comes from 127.0.0.1 too: the per-IP session cap (1,000) would refuse the idle phase.
  maxSessionsPerIp: 1_000_000,
  limits: { sendsPerSecond: 1_000_000_000, sendBurst: 1_000_000_000 },
} as const satisfies Partial<GatewayOptions>;
