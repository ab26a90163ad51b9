/**
 * Chaos, bounded for CI: 3 gateway processes, a 3-node NATS cluster (JetStream, R3), 150 SDK
 * clients sending to users and rooms across nodes; one cycle of faults: SIGKILL a gateway,
 * SIGKILL a NATS server, a rolling SIGTERM restart of every gateway, and sockets cut at random
 * all along. The ledger must show nothing acknowledged lost, nothing duplicated, nothing out of
 * order, every send settled, and no `gap` (with default retention a gap is a defect). In `npm test`;
 * `npm run test:chaos` runs it alone, `npm run chaos -- --minutes N` the same for longer. The run
 * stops every process it started, also when it fails (runChaos's `finally`).
 */
import { describe, expect, it } from 'vitest';
import { chaosTable, runChaos } from '../harness/chaos.ts';

describe('chaos', () => {
  it('chaos - gateway SIGKILL, NATS SIGKILL, rolling SIGTERM and socket drops: nothing lost, nothing duplicated', async () => {
    const report = await runChaos({ clients: 150, durationMs: 20_000, sendIntervalMs: 1500, dropsPerSecond: 5 });
    // The table in the output says what happened when it fails.
    console.log(chaosTable(report));
    expect(report.faults.map((f) => f.kind)).toEqual(
      expect.arrayContaining(['gateway SIGKILL', 'nats SIGKILL', 'gateway SIGTERM (rolling)']),
    );
    expect(report.counts.acked).toBeGreaterThan(1000);
    expect(report.counts.pending).toBe(0);
    expect(report.problems).toEqual([]);
    // Default retention: nothing is old enough to be beyond it, so a gap would be a defect.
    expect(report.gaps).toBe(0);
    expect(report.counts.lost).toBe(0);
    expect(report.counts.duplicated).toBe(0);
  }, 120_000);
});
