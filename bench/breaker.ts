/**
 * How fast the gateway's auth breaker opens and closes around real auth outages, and what
 * connecting clients see meanwhile. A script that prints figures; it asserts nothing.
 *
 *   npm run bench:breaker                       # 12 outages, kill and hang alternating
 *   npx tsx bench/breaker.ts --outages 20 --kinds hang --outage-ms 6000
 *
 * Runs a real nats-server (free port), one gateway in this process (port 0, default breaker
 * options, default auth request timeout) and the auth service as a real child process
 * (`node bin/chatgate.js auth`, CHATGATE_HOME in a temp dir; tokens are minted here from the same
 * home). A few client loops connect continuously: open a socket with `Authorization: Bearer`,
 * wait for `welcome` or a close, record the wait and `degraded`, close, repeat.
 *
 * Each outage is one fault of the auth process: `kill` (SIGKILL, then a new process started
 * after `--outage-ms`) or `hang` (SIGSTOP, then SIGCONT after `--outage-ms`). "Return" is the new
 * process's `auth service ready` line, or the SIGCONT. The next outage starts once the breaker
 * has closed and a session has been welcomed with `degraded: false` since the return, plus
 * `--settle-ms`. Per outage it measures:
 *
 *   open      outage start → first `breaker.opened`
 *   closed    return → first `breaker.closed`
 *   healthy   return → first `welcome` with degraded: false received after the return
 *   wait      the longest wait (socket opened → welcome or close) of any attempt that overlapped
 *             the window from outage start to max(closed, healthy)
 *   failed    attempts in that window that ended in a close, an error or a timeout, not a welcome
 *
 * Progress goes to stderr, the table and the summary to stdout. Every loop and process is
 * stopped at the end, on an error, and on SIGINT/SIGTERM.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import type { BreakerOptions } from '../machines/circuit-breaker.machine.ts';
import { startGateway, type Gateway } from '../src/gateway/gateway.ts';
import { loadSigningKeys } from '../src/auth/keys.ts';
import { startNatsServer, type NatsServer } from '../src/bus/nats-server.ts';
import { mintToken } from '../src/auth/tokens.ts';

const BIN = fileURLToPath(new URL('../bin/chatgate.js', import.meta.url));

type FaultKind = 'kill' | 'hang';

interface BenchOptions {
  outages: number;
  kinds: FaultKind[];
  outageMs: number;
  clients: number;
  /** Shortest time between two connects of one loop. */
  intervalMs: number;
  settleMs: number;
  /** Longest wait for one attempt's welcome or close. */
  attemptTimeoutMs: number;
  /** Longest wait for recovery after the service returned. */
  recoveryTimeoutMs: number;
  /** No outage starts after this much time since the start. */
  budgetMs: number;
  verbose: boolean;
}

const USAGE = `usage: tsx bench/breaker.ts [--outages N] [--kinds kill,hang] [--outage-ms MS] [--clients N]
                          [--interval-ms MS] [--settle-ms MS] [--budget-s S] [--verbose]`;

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      outages: { type: 'string', default: '12' },
      kinds: { type: 'string', default: 'kill,hang' },
      'outage-ms': { type: 'string', default: '4000' },
      clients: { type: 'string', default: '4' },
      'interval-ms': { type: 'string', default: '60' },
      'settle-ms': { type: 'string', default: '1000' },
      'budget-s': { type: 'string', default: '170' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const int = (name: string, raw: string, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      process.stderr.write(`bench: --${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}\n${USAGE}\n`);
      process.exit(2);
    }
    return n;
  };
  const kinds = values.kinds.split(',').map((k) => k.trim()).filter(Boolean);
  if (kinds.length === 0 || !kinds.every((k): k is FaultKind => k === 'kill' || k === 'hang')) {
    process.stderr.write(`bench: --kinds is a comma-separated list of kill and hang, got ${JSON.stringify(values.kinds)}\n`);
    process.exit(2);
  }
  return {
    outages: int('outages', values.outages, 1),
    kinds,
    outageMs: int('outage-ms', values['outage-ms'], 0),
    // One loopback address per client loop: 127.0.0.11 to 127.0.0.210.
    clients: int('clients', values.clients, 1, 200),
    intervalMs: int('interval-ms', values['interval-ms'], 0),
    settleMs: int('settle-ms', values['settle-ms'], 0),
    budgetMs: int('budget-s', values['budget-s'], 1) * 1000,
    attemptTimeoutMs: 10_000,
    recoveryTimeoutMs: 30_000,
    verbose: values.verbose,
  };
}

const now = () => performance.now();
const progress = (line: string) => process.stderr.write(`bench: ${line}\n`);

// ---------------------------------------------------------------------------------------------
// The auth service as a child process.

class AuthProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  /** The last few KB of its output, for error messages. */
  tail = '';
  #stopped = false;
  #waiters: Array<() => void> = [];

  constructor(natsUrl: string, home: string) {
    this.child = spawn(process.execPath, [BIN, 'auth', '--nats', natsUrl], {
      env: { ...process.env, CHATGATE_HOME: home, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const collect = (d: Buffer) => {
      this.tail = (this.tail + d.toString()).slice(-4096);
      for (const wake of this.#waiters.splice(0)) wake();
    };
    this.child.stdout!.on('data', collect);
    this.child.stderr!.on('data', collect);
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    void this.exited.then(() => {
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the time its `auth service ready` line arrived; bounded. */
  async ready(timeoutMs = 15_000): Promise<number> {
    const deadline = now() + timeoutMs;
    for (;;) {
      if (/auth service ready/.test(this.tail)) return now();
      if (!this.alive) throw new Error(`auth process exited before it was ready: ${this.tail}`);
      const left = deadline - now();
      if (left <= 0) throw new Error(`auth process not ready in ${timeoutMs} ms: ${this.tail}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  signal(sig: NodeJS.Signals): void {
    if (this.alive) this.child.kill(sig);
  }

  /** Marks an exit as intended (killed by the bench), so it is not reported as a crash. */
  expectExit(): void {
    this.#stopped = true;
  }

  get crashed(): boolean {
    return !this.#stopped && !this.alive;
  }

  /** Continues it if stopped, then SIGTERM, then SIGKILL after 3 s. Safe to call twice. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (!this.alive) return;
    this.child.kill('SIGCONT');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Clients connecting continuously.

interface Attempt {
  startedAt: number;
  endedAt: number;
  outcome: 'welcome' | 'closed' | 'error' | 'timeout';
  degraded?: boolean;
  closeCode?: number;
  error?: string;
}

/** One connect: resolves with the welcome, close, error or timeout, whichever comes first. */
function connectOnce(url: string, token: string, localAddress: string, timeoutMs: number): Promise<Attempt> {
  return new Promise((resolve) => {
    const startedAt = now();
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, localAddress });
    let done = false;
    const finish = (result: Omit<Attempt, 'startedAt' | 'endedAt'>) => {
      if (done) return;
      done = true;
      const endedAt = now();
      clearTimeout(timer);
      ws.terminate();
      resolve({ startedAt, endedAt, ...result });
    };
    const timer = setTimeout(() => finish({ outcome: 'timeout' }), timeoutMs);
    ws.on('message', (data) => {
      let frame: { type?: unknown; degraded?: unknown };
      try {
        frame = JSON.parse(data.toString()) as typeof frame;
      } catch {
        // Not JSON: not a welcome; the close or the timeout ends the attempt.
        return;
      }
      if (frame.type === 'welcome') finish({ outcome: 'welcome', degraded: frame.degraded === true });
    });
    ws.on('unexpected-response', (_req, res) => finish({ outcome: 'error', error: `HTTP ${res.statusCode}` }));
    ws.on('close', (code) => finish({ outcome: 'closed', closeCode: code }));
    // After finish() the socket is terminated on purpose; an error then is the abort itself.
    ws.on('error', (err: Error & { code?: string }) => finish({ outcome: 'error', error: err.code ?? err.name }));
  });
}

/**
 * One loop per token. Each loop connects from its own loopback address (127.0.0.11, .12, …) and
 * at most once per `intervalMs`, so that a per-IP handshake limit on the gateway (20/s) measures
 * nothing here: every refused handshake would count as a failed connect.
 */
function startClients(url: string, tokens: string[], options: BenchOptions) {
  const attempts: Attempt[] = [];
  let stopped = false;
  const loops = tokens.map(async (token, i) => {
    const localAddress = `127.0.0.${11 + i}`;
    while (!stopped) {
      const attempt = await connectOnce(url, token, localAddress, options.attemptTimeoutMs);
      attempts.push(attempt);
      const left = options.intervalMs - (attempt.endedAt - attempt.startedAt);
      if (left > 0) await sleep(left);
    }
  });
  return {
    attempts,
    /** Stops every loop; each ends within one attempt timeout. */
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Breaker events.

interface BreakerMark {
  type: 'opened' | 'halfOpened' | 'closed';
  at: number;
  reason?: string;
  attempt?: number;
  waitMs?: number;
}

function recordBreaker(gateway: Gateway, verbose: boolean, since: () => number) {
  const marks: BreakerMark[] = [];
  const breaker = gateway.auth.breaker;
  const push = (mark: BreakerMark) => {
    marks.push(mark);
    if (verbose) {
      const detail = [mark.reason, mark.attempt !== undefined ? `attempt ${mark.attempt}` : '', mark.waitMs !== undefined ? `wait ${mark.waitMs} ms` : '']
        .filter(Boolean)
        .join(', ');
      progress(`  +${Math.round(mark.at - since())} ms breaker ${mark.type}${detail ? ` (${detail})` : ''}`);
    }
  };
  const subs = [
    breaker.on('breaker.opened', (e) => push({ type: 'opened', at: now(), reason: e.reason, attempt: e.attempt, waitMs: e.waitMs })),
    breaker.on('breaker.halfOpened', (e) => push({ type: 'halfOpened', at: now(), attempt: e.attempt })),
    breaker.on('breaker.closed', (e) => push({ type: 'closed', at: now(), reason: e.reason })),
  ];
  return { marks, stop: () => subs.forEach((s) => s.unsubscribe()) };
}

// ---------------------------------------------------------------------------------------------
// Measuring one outage.

interface OutageResult {
  index: number;
  kind: FaultKind;
  /** Outage start → service return, as it happened (kill: includes the restart). */
  downMs: number;
  openMs: number | undefined;
  openReason: string | undefined;
  /** Times the breaker opened between outage start and its close. */
  opens: number;
  closedMs: number | undefined;
  healthyMs: number | undefined;
  longestWaitMs: number;
  /** When the longest wait began, from outage start. */
  longestWaitStartMs: number;
  attempts: number;
  degraded: number;
  failed: number;
  failures: string[];
  /** The breaker closed while the service was still out: a wrong close. */
  closedWhileDown: boolean;
}

function measure(
  index: number,
  kind: FaultKind,
  startAt: number,
  returnAt: number,
  marks: readonly BreakerMark[],
  attempts: readonly Attempt[],
): OutageResult {
  const firstOpen = marks.find((m) => m.type === 'opened' && m.at >= startAt);
  const closed = marks.find((m) => m.type === 'closed' && m.at >= returnAt);
  const healthy = attempts
    .filter((a) => a.outcome === 'welcome' && a.degraded === false && a.endedAt >= returnAt)
    .reduce<Attempt | undefined>((first, a) => (!first || a.endedAt < first.endedAt ? a : first), undefined);
  const endAt = Math.max(closed?.at ?? now(), healthy?.endedAt ?? now());
  const inWindow = attempts.filter((a) => a.endedAt >= startAt && a.startedAt <= endAt);
  const failedAttempts = inWindow.filter((a) => a.outcome !== 'welcome');
  const longest = inWindow.reduce<Attempt | undefined>(
    (max, a) => (!max || a.endedAt - a.startedAt > max.endedAt - max.startedAt ? a : max),
    undefined,
  );
  return {
    index,
    kind,
    downMs: returnAt - startAt,
    openMs: firstOpen && firstOpen.at - startAt,
    openReason: firstOpen?.reason,
    opens: marks.filter((m) => m.type === 'opened' && m.at >= startAt && m.at <= endAt).length,
    closedMs: closed && closed.at - returnAt,
    healthyMs: healthy && healthy.endedAt - returnAt,
    longestWaitMs: longest ? longest.endedAt - longest.startedAt : 0,
    longestWaitStartMs: longest ? longest.startedAt - startAt : 0,
    attempts: inWindow.length,
    degraded: inWindow.filter((a) => a.outcome === 'welcome' && a.degraded).length,
    failed: failedAttempts.length,
    failures: [...new Set(failedAttempts.map((a) => a.closeCode !== undefined ? `close ${a.closeCode}` : a.error ?? a.outcome))],
    closedWhileDown: marks.some((m) => m.type === 'closed' && m.at >= startAt && m.at < returnAt),
  };
}

/** Bounded poll until `ready()` holds; false on timeout. */
async function until(ready: () => boolean, timeoutMs: number, check?: () => void): Promise<boolean> {
  const deadline = now() + timeoutMs;
  while (!ready()) {
    check?.();
    if (now() > deadline) return false;
    await sleep(10);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Printing.

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1]! + s[mid]!) / 2;
}

const ms = (v: number | undefined) => (v === undefined ? '—' : String(Math.round(v)));

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** The commit measured, and whether the code under src/ and machines/ differs from it. */
function revision(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git('rev-parse', '--short', 'HEAD');
    const dirty = git('status', '--porcelain', '--', 'src', 'machines', 'bin') !== '';
    return dirty ? `${head} with uncommitted changes in src/, machines/ or bin/` : head;
  } catch {
    // Not a git checkout (an archive): nothing to say.
    return 'unknown';
  }
}

function report(
  results: OutageResult[],
  options: BenchOptions,
  startedAt: Date,
  runtimeMs: number,
  totals: { attempts: number; failed: number; loadAtStart: number[]; revisionAtStart: string; breaker: BreakerOptions },
) {
  const cpu = cpus();
  const out: string[] = [];
  out.push('chatgate auth breaker benchmark');
  out.push(`date:     ${startedAt.toISOString()}`);
  out.push(`machine:  ${cpu[0]?.model ?? 'unknown cpu'}, ${cpu.length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, ${platform()} ${release()}, node ${process.version}`);
  out.push(`load:     ${totals.loadAtStart.map((l) => l.toFixed(2)).join(' ')} (1, 5, 15 min) at start, ${loadavg().map((l) => l.toFixed(2)).join(' ')} at end`);
  out.push(`command:  ${['tsx', 'bench/breaker.ts', ...process.argv.slice(2)].join(' ')}`);
  const revisionAtEnd = revision();
  out.push(
    `code:     ${totals.revisionAtStart === revisionAtEnd ? revisionAtEnd : `${totals.revisionAtStart} at start, ${revisionAtEnd} at end`}`,
  );
  out.push(
    `setup:    ${options.outages} outages (${options.kinds.join(', ')}), ${options.outageMs} ms each, ${options.clients} client loops ` +
      `(one connect per ${options.intervalMs} ms at most), settle ${options.settleMs} ms`,
  );
  // As the gateway's breaker runs them: the defaults, with slowCallMs = the auth request timeout.
  out.push(`breaker:  ${JSON.stringify(totals.breaker)}`);
  out.push('');
  out.push('per outage (ms; open and "began" from outage start, closed and healthy from service return;');
  out.push('down = outage start to service return, a kill\'s includes the restart of the process):');
  out.push(
    table(
      ['#', 'kind', 'down', 'open', 'first trip', 'opens', 'closed', 'healthy', 'longest wait', 'began', 'connects', 'degraded', 'failed'],
      results.map((r) => [
        String(r.index),
        r.kind,
        ms(r.downMs),
        ms(r.openMs),
        r.openReason ?? '—',
        String(r.opens),
        ms(r.closedMs) + (r.closedWhileDown ? '!' : ''),
        ms(r.healthyMs),
        ms(r.longestWaitMs),
        ms(r.longestWaitStartMs),
        String(r.attempts),
        String(r.degraded),
        r.failed ? `${r.failed} (${r.failures.join(', ')})` : '0',
      ]),
    ),
  );
  if (results.some((r) => r.closedWhileDown)) out.push('! the breaker also closed while the service was still out');
  out.push('');
  const summaryRow = (name: string, values: Array<number | undefined>, unit = 'ms') => {
    const known = values.filter((v): v is number => v !== undefined);
    const missing = values.length - known.length;
    return [name, '', ms(median(known)), ms(known.length ? Math.max(...known) : undefined), unit + (missing ? `, ${missing} not seen` : '')];
  };
  const sections: Array<[string, FaultKind[]]> = [['all', options.kinds]];
  if (options.kinds.length > 1) for (const k of options.kinds) sections.push([k, [k]]);
  for (const [title, kinds] of sections) {
    const rs = results.filter((r) => kinds.includes(r.kind));
    if (rs.length === 0) continue;
    out.push(`summary, ${title} (${rs.length} outages):`);
    out.push(
      table(
        ['figure', '', 'median', 'worst', ''],
        [
          summaryRow('outage → breaker open', rs.map((r) => r.openMs)),
          summaryRow('return → breaker closed', rs.map((r) => r.closedMs)),
          summaryRow('return → first non-degraded welcome', rs.map((r) => r.healthyMs)),
          summaryRow('longest client wait', rs.map((r) => r.longestWaitMs)),
          summaryRow('failed connects per outage', rs.map((r) => r.failed), 'connects'),
        ],
      ),
    );
    out.push('');
  }
  out.push(`connects in the whole run: ${totals.attempts}, failed: ${totals.failed}; runtime ${(runtimeMs / 1000).toFixed(1)} s`);
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------------------------------------
// The run.

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const startedAt = new Date();
  const loadAtStart = loadavg();
  const revisionAtStart = revision();
  const t0 = now();
  const cleanups: Array<() => Promise<unknown> | void> = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const c of cleanups.splice(0).reverse()) {
        try {
          await c();
        } catch (err) {
          progress(`cleanup step failed: ${String(err)}`);
        }
      }
    })());
  const onSignal = (signal: NodeJS.Signals) => {
    progress(`${signal}: stopping`);
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const home = await mkdtemp(join(tmpdir(), 'chatgate-bench-'));
    cleanups.push(() => rm(home, { recursive: true, force: true }));
    const nats: NatsServer = await startNatsServer({ port: -1 });
    cleanups.push(() => nats.stop());

    // Keys first, so the auth process and the tokens share them.
    const keys = await loadSigningKeys(home);
    let auth = new AuthProcess(nats.url, home);
    const processes = new Set<AuthProcess>([auth]);
    cleanups.push(() => Promise.all([...processes].map((p) => p.stop())));
    await auth.ready();

    // The gateway after the auth service, so that it starts with the JWK Set cached.
    const gateway = await startGateway({ natsUrl: nats.url, port: 0, host: '127.0.0.1', nodeId: 'bench' });
    cleanups.push(() => gateway.close());
    if (!gateway.authStatus().keysCached) throw new Error('the gateway started without the JWK Set');
    let outageStart = t0;
    const breaker = recordBreaker(gateway, options.verbose, () => outageStart);
    cleanups.push(() => breaker.stop());

    const tokens = await Promise.all(
      Array.from({ length: options.clients }, (_, i) => mintToken(keys, { sub: `bench-${i}`, ttl: 3600 })),
    );
    const clients = startClients(gateway.url, tokens, options);
    cleanups.push(() => clients.stop());

    const warm = await until(
      () => clients.attempts.some((a) => a.outcome === 'welcome' && a.degraded === false),
      10_000,
    );
    if (!warm) throw new Error(`no healthy welcome within 10 s: ${JSON.stringify(clients.attempts.slice(-3))}`);
    await sleep(options.settleMs);
    progress(`ready: nats ${nats.url}, gateway ${gateway.url}, auth pid ${auth.child.pid}`);

    const results: OutageResult[] = [];
    const finish = async () => {
      await clients.stop();
      const failedTotal = clients.attempts.filter((a) => a.outcome !== 'welcome').length;
      report(results, options, startedAt, now() - t0, {
        attempts: clients.attempts.length,
        failed: failedTotal,
        loadAtStart,
        revisionAtStart,
        breaker: gateway.auth.breaker.getSnapshot().context.options,
      });
    };
    try {
      for (let i = 0; i < options.outages; i++) {
        if (now() - t0 > options.budgetMs) {
          progress(`time budget (${options.budgetMs / 1000} s) spent: stopping after ${i} outages`);
          break;
        }
        const kind = options.kinds[i % options.kinds.length]!;
        const checkAuth = () => {
          if (auth.crashed) throw new Error(`auth process exited unexpectedly: ${auth.tail}`);
        };
        if (!gateway.auth.breaker.getSnapshot().matches('closed')) {
          throw new Error(`breaker not closed before outage ${i + 1}: ${String(gateway.auth.breaker.getSnapshot().value)}`);
        }

        outageStart = now();
        if (kind === 'kill') {
          auth.expectExit();
          auth.signal('SIGKILL');
        } else {
          auth.signal('SIGSTOP');
        }
        await sleep(options.outageMs);

        let returnAt: number;
        if (kind === 'kill') {
          await auth.exited;
          processes.delete(auth);
          auth = new AuthProcess(nats.url, home);
          processes.add(auth);
          returnAt = await auth.ready();
        } else {
          auth.signal('SIGCONT');
          returnAt = now();
        }

        const recovered = await until(
          () =>
            breaker.marks.some((m) => m.type === 'closed' && m.at >= returnAt) &&
            clients.attempts.some((a) => a.outcome === 'welcome' && a.degraded === false && a.endedAt >= returnAt),
          options.recoveryTimeoutMs,
          checkAuth,
        );
        const result = measure(i + 1, kind, outageStart, returnAt, breaker.marks, clients.attempts);
        results.push(result);
        progress(
          `outage ${i + 1}/${options.outages} ${kind}: open ${ms(result.openMs)} ms (${result.openReason ?? '—'}), ` +
            `closed ${ms(result.closedMs)} ms, healthy ${ms(result.healthyMs)} ms after return, ` +
            `longest wait ${ms(result.longestWaitMs)} ms (began ${ms(result.longestWaitStartMs)} ms after outage start, ` +
            `return at ${ms(result.downMs)} ms), failed ${result.failed}`,
        );
        if (!recovered) throw new Error(`no recovery within ${options.recoveryTimeoutMs} ms of the return (outage ${i + 1})`);
        await sleep(options.settleMs);
      }
    } catch (err) {
      // What was measured before the failure is still worth printing.
      if (results.length > 0) {
        progress('failed part way; the figures so far:');
        await finish();
      }
      throw err;
    }
    await finish();
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main().then(
  // Anything left (a NATS reconnect timer, a socket) must not keep the script alive.
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
