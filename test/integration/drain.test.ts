/**
 * Graceful drain of a real gateway process on SIGTERM: /readyz 503 at once while it still serves,
 * then upgrades refused with 503 and sessions closed with 1001 spread over the window, and an
 * exit (code 0) before SHUTDOWN_TIMEOUT_MS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleet, rawRequest, type Fleet } from '../harness/fleet.ts';
import type { TestClient } from '../harness/client.ts';
import { until } from '../harness/sync.ts';

const GRACE_MS = 1500;
const WINDOW_MS = 2000;
const SHUTDOWN_TIMEOUT_MS = 8000;
/** Timer and scheduling slack on a loaded two-core machine. */
const SLACK_MS = 400;

let fleet: Fleet;
beforeAll(async () => {
  fleet = await startFleet({
    gatewayEnv: () => ({
      DRAIN_GRACE_MS: String(GRACE_MS),
      DRAIN_WINDOW_MS: String(WINDOW_MS),
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
    }),
  });
});
afterAll(async () => {
  await fleet?.stop();
});

const readyz = async () => (await fetch(`http://127.0.0.1:${fleet.port}/readyz`, { signal: AbortSignal.timeout(5000) })).status;

describe('drain', () => {
  it('drain - SIGTERM: readyz 503 at once, still serving for the grace, then 503 upgrades and 1001 closes spread over the window, exit 0', async () => {
    const N = 8;
    const sessions: TestClient[] = [];
    for (let i = 0; i < N; i++) sessions.push((await fleet.session(`drain-${i}`)).client);
    const closedAt = new Map<TestClient, number>();
    for (const c of sessions) void c.closed.then(() => closedAt.set(c, Date.now()));
    expect(await readyz()).toBe(200);

    const term = Date.now();
    fleet.gateway.child.kill('SIGTERM');
    await until('readyz 503', async () => (await readyz()) === 503);
    expect(Date.now() - term).toBeLessThan(GRACE_MS);
    // Still serving during the grace: a new session is admitted and chats.
    const late = await fleet.session('drain-late');
    await fleet.chats(sessions[0]!, late.client, 'drain-late');
    expect(closedAt.size).toBe(0);

    // After the grace, upgrades are refused with 503.
    await until('the first close', () => closedAt.size > 0, GRACE_MS + WINDOW_MS + 2000);
    const refused = await rawRequest(
      fleet.port,
      'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    expect(refused.status).toBe(503);

    const code = await fleet.gateway.exited;
    const exitedAfter = Date.now() - term;
    expect(code).toBe(0);
    expect(exitedAfter).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    for (const c of [...sessions, late.client]) expect(c.closeCode).toBe(1001);
    // Spread: the first close after the grace, the last near the window's end, none bunched.
    const times = [...closedAt.values()].map((t) => t - term).sort((a, b) => a - b);
    expect(times[0]!).toBeGreaterThanOrEqual(GRACE_MS - 50);
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual((WINDOW_MS * (N - 1)) / (N + 1) - SLACK_MS);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(Math.max(...gaps)).toBeLessThan((2 * WINDOW_MS) / (N + 1) + SLACK_MS);
  });
});
