/**
 * `npm run chaos -- --minutes N`: the chaos run of test/harness/chaos.ts for N minutes (default
 * 1), with a progress line while it runs and the ledger's summary table at the end. Exit 0 when
 * nothing was lost or duplicated, 1 otherwise.
 *
 *   npm run chaos -- --minutes 10 [--clients 200] [--gateways 3] [--interval-ms 1000] [--drops 5]
 */
import { chaosTable, runChaos } from '../test/harness/chaos.ts';

function arg(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? Number(process.argv[at + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) {
    process.stderr.write(`chaos: --${name} needs a positive number\n`);
    process.exit(2);
  }
  return value;
}

const minutes = arg('minutes', 1);
const tty = process.stdout.isTTY;
const report = await runChaos({
  durationMs: minutes * 60_000,
  clients: arg('clients', 200),
  gateways: arg('gateways', 3),
  sendIntervalMs: arg('interval-ms', 1000),
  dropsPerSecond: arg('drops', 5),
  onProgress: (p) => {
    const c = p.counts;
    const line =
      `${(p.elapsedMs / 1000).toFixed(0).padStart(5)} s  open ${p.open}/${p.clients}  sent ${c.sent}  acked ${c.acked}  ` +
      `failed ${c.failed}  delivered ${c.delivered}/${c.expected}  faults ${p.faults}  ${p.last}`;
    // A progress line that rewrites itself on a terminal, one line per second otherwise.
    process.stdout.write(tty ? `\r${line.padEnd(140)}` : `${line}\n`);
  },
});
process.stdout.write(`${tty ? '\n' : ''}\n${chaosTable(report)}\n\nrepeat: npm run chaos -- --minutes ${minutes}\n`);
process.exit(report.problems.length === 0 ? 0 : 1);
