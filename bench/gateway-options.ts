/**
 * The gateway options the bench changes from their defaults: none in `npm run bench`. Every limit
 * stays at its default there; the load generator keeps each sender within the default send rate
 * and spreads its clients over 256 loopback addresses, so the per-IP handshake and session limits
 * see what they would see from many clients (bench/loadgen.ts).
 *
 * `npm run bench:scale` opens up to 50,000 sessions on one node, past the default
 * `maxConnections` (10,000): it lifts that one limit, which is what it measures beyond.
 */
import type { GatewayOptions } from '../src/gateway/gateway.ts';

export const scaleGatewayOptions = { maxConnections: 1_000_000 } as const satisfies Partial<GatewayOptions>;
