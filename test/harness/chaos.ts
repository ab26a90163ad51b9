/**
 * The chaos run: real processes and real faults, with a ledger (ledger.ts) of every send and
 * delivery. A 3-node NATS cluster (JetStream, restartable members on their own ports and stores),
 * the auth service and `gateways` gateway nodes as `chatgate` child processes, and `clients` SDK
 * clients in this process, each sending to users and to its room across nodes. Faults, in cycles:
 * SIGKILL a gateway (then start it again on its port), SIGKILL a NATS server (then again, same
 * store), a rolling restart of every gateway with SIGTERM (graceful drain), and sockets cut at
 * random all along. At the end sending stops, the outboxes empty, and the ledger gives its verdict.
 *
 * Used by test/chaos/ledger.test.ts (bounded, in `npm test`) and bench/chaos.ts (`npm run chaos`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer, type NatsServer } from '../../src/bus/nats-server.ts';
import { loadSigningKeys } from '../../src/auth/keys.ts';
import { mintToken } from '../../src/auth/tokens.ts';
import { ChatgateProcess } from './process.ts';
import { Ledger, type LedgerCounts } from './ledger.ts';
import { closeClients, sdkClient, trackedWebSocket, type SdkSocket } from './sdk.ts';
import type { ChatClient, HistoryTarget } from '../../src/client/index.ts';
import { destinationKey } from '../../src/client/positions.ts';

export interface ChaosOptions {
  /** Gateway processes. @default 3 */
  gateways?: number;
  /** SDK clients (one user each). @default 200 */
  clients?: number;
  /** Rooms; client i joins room i mod rooms. @default 8 */
  rooms?: number;
  /** How long clients send, faults included. @default 20000 */
  durationMs?: number;
  /** Each client sends about once per this many ms. @default 1000 */
  sendIntervalMs?: number;
  /** Sockets cut per second, across all clients. @default 5 */
  dropsPerSecond?: number;
  /** Extra environment of every gateway. */
  gatewayEnv?: Record<string, string>;
  /** Called about once a second. */
  onProgress?: (p: ChaosProgress) => void;
}

export interface ChaosProgress {
  elapsedMs: number;
  open: number;
  clients: number;
  counts: LedgerCounts;
  faults: number;
  last: string;
}

export interface StormFigures {
  /** Highest number of sessions opened on one node within one second, during rolling restarts. */
  peakConnectsPerSecondPerNode: number;
  /** p99 of the time from a socket lost to the client resumed (rooms re-joined), over the whole run, ms. */
  p99ResumeMs: number;
  /** The same, for sessions lost during rolling restarts only. */
  p99ResumeRollingMs: number;
  resumes: number;
}

export interface ChaosReport {
  counts: LedgerCounts;
  /** A few of the lost deliveries, when there are any. */
  lostSamples: Array<{ client: string; id: string; to: { user: string } | { room: string } }>;
  /** `gap` events: destinations the SDK was told could not be recovered. */
  gaps: number;
  /** The SDK's `error` events by code. */
  errors: Record<string, number>;
  problems: string[];
  faults: Array<{ atMs: number; kind: string; target: string }>;
  storm: StormFigures;
  /** Clients that were not open at the end: their state and, when closed for good, why. */
  notOpen: Array<{ user: string; state: string; failure?: { code: number; reason: string }; lastClose?: { code: number; reason: string } }>;
  /** Gateway starts that failed and were made again (see `Gateway.start`). */
  gatewayRestartRetries: number;
  durationMs: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** A NATS cluster member that can be killed and started again on the same ports and store. */
class Member {
  server: NatsServer | undefined;
  port = -1;
  clusterPort = -1;
  constructor(
    readonly name: string,
    readonly dir: string,
  ) {}

  async start(routes: string[]): Promise<void> {
    this.server = await startNatsServer({
      port: this.port,
      clusterPort: this.clusterPort,
      monitorPort: -1,
      routes,
      serverName: this.name,
      jetstreamDir: this.dir,
    });
    this.port = this.server.port;
    this.clusterPort = Number(new URL(this.server.routeUrl!.replace('nats-route', 'http')).port);
  }

  get routeUrl(): string {
    return `nats-route://127.0.0.1:${this.clusterPort}`;
  }

  kill(): void {
    this.server?.process.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    await this.server?.stop();
  }
}

/** See ../harness/nats.ts: the seed of a 2.9 JetStream cluster routes to a name that never resolves. */
const SEED_ROUTE = 'nats-route://chatgate-seed.invalid:4248';

async function waitForMeta(members: Member[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const metas = await Promise.all(
        members.map(async (m) => {
          const res = await fetch(`${m.server!.monitorUrl}/jsz`, { signal: AbortSignal.timeout(2000) });
          return ((await res.json()) as { meta_cluster?: { leader?: string; cluster_size?: number } }).meta_cluster;
        }),
      );
      const leaders = new Set(metas.map((m) => m?.leader));
      if (leaders.size === 1 && !leaders.has(undefined) && !leaders.has('') && metas.every((m) => (m?.cluster_size ?? 0) >= members.length)) return;
    } catch {
      // A member still starting: ask again.
    }
    if (Date.now() > deadline) throw new Error('NATS cluster did not elect a JetStream meta leader in time');
    await sleep(50);
  }
}

class Gateway {
  process: ChatgateProcess | undefined;
  port = 0;
  constructor(
    readonly name: string,
    readonly env: Record<string, string>,
  ) {}

  /** Retries made because a start failed (NATS still electing stream leaders after a fault). */
  retries = 0;

  /**
   * Starts the process, and starts it again when it exits before it is ready, as a supervisor
   * (systemd, Kubernetes) would: a gateway that starts while a NATS server of the cluster is
   * down may time out setting up its streams and exit.
   */
  async start(attempts = 5): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.process = new ChatgateProcess(['gateway'], { ...this.env, PORT: String(this.port), NODE_ID: this.name });
      try {
        const match = await this.process.waitFor(/"port":(\d+)[^\n]*"msg":"gateway ready"/, 30_000);
        this.port = Number(match[1]);
        return;
      } catch (err) {
        await this.process.stop(2000);
        if (attempt >= attempts) throw err;
        this.retries++;
        await sleep(1000);
      }
    }
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }
}

/**
 * What an application does on `gap`: reads the destination's history backwards, page by page,
 * until a page holds a message it already had (or the history ends), and hands the ledger the
 * ones it had not. Asked again (bounded) while the socket is away.
 */
async function reloadHistory(ledger: Ledger, user: string, client: ChatClient, target: HistoryTarget): Promise<void> {
  let before: string | undefined;
  for (let attempt = 0, pages = 0; attempt < 20 && pages < 20; ) {
    let page;
    try {
      page = await client.history(target, { limit: 100, ...(before === undefined ? {} : { before }) });
    } catch {
      attempt++;
      await sleep(500);
      continue;
    }
    pages++;
    let known = false;
    for (const m of page.messages) {
      const id = (m.body as { ledger?: unknown } | null)?.ledger;
      if (typeof id !== 'string') continue;
      if (ledger.times(user, id) > 0) known = true;
      else ledger.recovered(user, id);
    }
    if (known || !page.more || page.messages.length === 0) return;
    before = page.messages[0]!.pos;
  }
}

export async function runChaos(options: ChaosOptions = {}): Promise<ChaosReport> {
  const G = options.gateways ?? 3;
  const N = options.clients ?? 200;
  const R = options.rooms ?? 8;
  const durationMs = options.durationMs ?? 20_000;
  const sendIntervalMs = options.sendIntervalMs ?? 1000;
  const dropsPerSecond = options.dropsPerSecond ?? 5;
  const home = await mkdtemp(join(tmpdir(), 'chatgate-chaos-'));
  const members = [0, 1, 2].map((i) => new Member(`chaos-${i}`, join(home, `js-${i}`)));
  const gateways: Gateway[] = [];
  let auth: ChatgateProcess | undefined;
  const timers = new Set<ReturnType<typeof setInterval>>();
  let stopped = false;
  const faults: ChaosReport['faults'] = [];
  const ledger = new Ledger();
  const started = Date.now();
  const clients: Array<{ user: string; client: ChatClient; sockets: SdkSocket[]; room: string }> = [];
  /** Per node, the times sessions opened there. */
  const opens = new Map<string, number[]>();
  const resumes: Array<{ at: number; ms: number }> = [];
  const rolling: Array<[number, number]> = [];
  let gaps = 0;
  const reload = (user: string, client: ChatClient, target: HistoryTarget) => reloadHistory(ledger, user, client, target);
  const errors = new Map<string, number>();

  const stopEverything = async () => {
    stopped = true;
    for (const t of timers) clearInterval(t);
    closeClients();
    await Promise.all(gateways.map((g) => g.process?.stop(5000)));
    await auth?.stop(5000);
    await Promise.all(members.map((m) => m.stop()));
    await rm(home, { recursive: true, force: true });
  };

  try {
    // NATS: the seed first, then members routing to it; all with JetStream in their own store.
    await members[0]!.start([SEED_ROUTE]);
    for (const m of members.slice(1)) await m.start([members[0]!.routeUrl]);
    await waitForMeta(members);
    const natsUrls = (first: number) =>
      [0, 1, 2].map((k) => `nats://127.0.0.1:${members[(first + k) % 3]!.port}`).join(',');

    const keys = await loadSigningKeys(home);
    auth = new ChatgateProcess(['auth'], { CHATGATE_HOME: home, NATS_URL: natsUrls(2), REVOCATION_REPLICAS: '3' });
    await auth.waitFor(/auth service ready/, 30_000);
    for (let i = 0; i < G; i++) {
      const g = new Gateway(`chaos-gw-${i}`, {
        CHATGATE_HOME: home,
        NATS_URL: natsUrls(i),
        HOST: '127.0.0.1',
        HANDSHAKES_PER_IP_PER_SECOND: '1000000',
        MAX_SESSIONS_PER_IP: '100000',
        SENDS_PER_SECOND: '1000000',
        SEND_BURST: '1000000',
        SEND_BYTES_PER_SECOND: '100000000',
        SEND_BYTES_BURST: '100000000',
        DRAIN_GRACE_MS: '200',
        DRAIN_WINDOW_MS: '1500',
        SHUTDOWN_TIMEOUT_MS: '8000',
        DELIVERY: 'durable',
        STREAM_REPLICAS: '3',
        ...options.gatewayEnv,
      });
      gateways.push(g);
      await g.start();
    }

    // Clients: user u<i>, in room r<i mod R>, trying the gateways from its own first.
    for (let i = 0; i < N; i++) {
      const user = `u${i}`;
      const sockets: SdkSocket[] = [];
      const client = sdkClient({
        urls: gateways.map((_, k) => gateways[(i + k) % G]!.url),
        token: () => mintToken(keys, { sub: user, rooms: '*' }),
        WebSocket: trackedWebSocket((s) => sockets.push(s)),
        minDelayMs: 100,
        maxDelayMs: 2000,
        connectTimeoutMs: 5000,
        sendTimeoutMs: 20_000,
        requestTimeoutMs: 5000,
      });
      const room = `r${i % R}`;
      const entry = { user, client, sockets, room };
      clients.push(entry);
      let lostAt: number | undefined;
      client.on('state', (s) => {
        if (s.state === 'open' && s.node) {
          let list = opens.get(s.node);
          if (!list) opens.set(s.node, (list = []));
          list.push(Date.now());
        }
        if (s.state === 'reconnecting') lostAt ??= Date.now();
      });
      client.on('resumed', () => {
        if (lostAt !== undefined) resumes.push({ at: lostAt, ms: Date.now() - lostAt });
        lostAt = undefined;
      });
      // As docs/client.md tells applications: a gap is answered by reloading the destination's history.
      client.on('gap', (g) => {
        gaps++;
        void reload(user, client, g.room !== undefined ? { room: g.room } : { user: true });
      });
      client.on('error', (e) => errors.set(e.code, (errors.get(e.code) ?? 0) + 1));
      client.on('message', (m) => {
        const id = (m.body as { ledger?: unknown } | null)?.ledger;
        if (typeof id === 'string') ledger.delivered(user, id, destinationKey(m.to));
      });
      void client.join(room);
    }
    const members_ = (room: string) => clients.filter((c) => c.room === room).map((c) => c.user);
    const roomMembers = new Map([...new Set(clients.map((c) => c.room))].map((r) => [r, members_(r)]));
    // Everyone joined before the first send: every member is addressed by every room message.
    const readyBy = Date.now() + 60_000;
    while (clients.some((c) => !c.client.resumed || c.client.state !== 'open')) {
      if (Date.now() > readyBy) throw new Error('the clients did not all connect within 60 s');
      await sleep(50);
    }

    // Sending: each client about once per interval, to a user or to its room.
    let seq = 0;
    const perSender = new Map<string, number>();
    const sendFrom = (c: (typeof clients)[number]) => {
      const n = perSender.get(c.user) ?? 0;
      perSender.set(c.user, n + 1);
      const id = `${c.user}:${n}`;
      seq++;
      let to: { user: string } | { room: string };
      let addressed: string[];
      if (seq % 2 === 0) {
        let other = clients[Math.floor(Math.random() * N)]!;
        if (other.user === c.user) other = clients[(clients.indexOf(other) + 1) % N]!;
        to = { user: other.user };
        addressed = [other.user];
      } else {
        to = { room: c.room };
        addressed = roomMembers.get(c.room)!.filter((u) => u !== c.user);
      }
      ledger.sent({ id, sender: c.user, seq: n, to, addressed });
      c.client.send(to, { ledger: id }).then(
        () => ledger.acked(id),
        (err: { code?: string }) => ledger.failed(id, err.code ?? String(err)),
      );
    };
    // No warm-up: a destination that is still empty when its client comes has a position too
    // (docs/client.md, "Positions"), so faults may hit clients before their first message.

    const sendTick = Math.max(5, Math.floor(sendIntervalMs / N));
    let cursor = 0;
    const sender = setInterval(() => {
      // Round robin: N clients over one interval, a few per tick.
      const perTick = Math.max(1, Math.round((N * sendTick) / sendIntervalMs));
      for (let k = 0; k < perTick; k++) sendFrom(clients[cursor++ % N]!);
    }, sendTick);
    timers.add(sender);

    // Random socket drops all along.
    if (dropsPerSecond > 0) {
      const dropper = setInterval(() => {
        const c = clients[Math.floor(Math.random() * N)]!;
        const socket = c.sockets.at(-1);
        if (socket && socket.readyState === 1) socket.terminate();
      }, Math.max(10, Math.floor(1000 / dropsPerSecond)));
      timers.add(dropper);
    }

    const fault = (kind: string, target: string) => faults.push({ atMs: Date.now() - started, kind, target });
    let last = '';
    const progress = setInterval(() => {
      options.onProgress?.({
        elapsedMs: Date.now() - started,
        open: clients.filter((c) => c.client.state === 'open').length,
        clients: N,
        counts: ledger.counts(),
        faults: faults.length,
        last,
      });
    }, 1000);
    timers.add(progress);

    // Fault cycles: each about 20 s; a run shorter than one cycle gets one of each, compressed.
    const cycleMs = Math.min(20_000, durationMs);
    const runEnd = Date.now() + durationMs;
    let cycle = 0;
    while (Date.now() < runEnd - cycleMs * 0.2 && !stopped) {
      const cycleStart = Date.now();
      const at = (fraction: number) => sleep(Math.max(0, cycleStart + cycleMs * fraction - Date.now()));
      await at(0.1);
      const victim = gateways[cycle % G]!;
      last = `SIGKILL ${victim.name}`;
      fault('gateway SIGKILL', victim.name);
      victim.process!.child.kill('SIGKILL');
      await victim.process!.exited;
      await sleep(500);
      await victim.start();

      await at(0.3);
      const member = members[(cycle + 1) % 3]!;
      last = `SIGKILL nats ${member.name}`;
      fault('nats SIGKILL', member.name);
      const proc = member.server!.process;
      member.kill();
      if (proc.exitCode === null && proc.signalCode === null) await new Promise((r) => proc.once('exit', r));
      await sleep(1000);
      await member.start(members.filter((m) => m !== member).map((m) => m.routeUrl));
      await waitForMeta(members);

      await at(0.5);
      const rollStart = Date.now();
      for (const g of gateways) {
        last = `rolling SIGTERM ${g.name}`;
        fault('gateway SIGTERM (rolling)', g.name);
        await g.process!.stop(10_000);
        await g.start();
      }
      rolling.push([rollStart, Date.now()]);
      cycle++;
      await at(1);
    }
    while (Date.now() < runEnd) await sleep(100);

    // Quiesce: stop sending, let every outbox settle, then every owed delivery arrive (bounded).
    clearInterval(sender);
    timers.delete(sender);
    const settleBy = Date.now() + 30_000;
    while (clients.some((c) => c.client.pendingSends > 0) && Date.now() < settleBy) await sleep(100);
    const deliverBy = Date.now() + 15_000;
    while (ledger.counts().lost > 0 && Date.now() < deliverBy) await sleep(100);
    // Anything arriving twice arrives soon after the first copy.
    await sleep(1000);

    const counts = ledger.counts();
    const inRolling = (t: number) => rolling.some(([a, b]) => t >= a && t <= b + 5000);
    let peak = 0;
    for (const times of opens.values()) {
      const buckets = new Map<number, number>();
      for (const t of times) if (inRolling(t)) buckets.set(Math.floor(t / 1000), (buckets.get(Math.floor(t / 1000)) ?? 0) + 1);
      for (const n of buckets.values()) peak = Math.max(peak, n);
    }
    return {
      counts,
      lostSamples: ledger.lostSamples(),
      gaps,
      errors: Object.fromEntries(errors),
      problems: [...ledger.verdict(), ...(gaps > 0 ? [`${gaps} gaps (destinations the SDK could not resume)`] : [])],
      faults,
      storm: {
        peakConnectsPerSecondPerNode: peak,
        p99ResumeMs: percentile(resumes.map((r) => r.ms), 99),
        p99ResumeRollingMs: percentile(resumes.filter((r) => inRolling(r.at)).map((r) => r.ms), 99),
        resumes: resumes.length,
      },
      gatewayRestartRetries: gateways.reduce((n, g) => n + g.retries, 0),
      notOpen: clients
        .filter((c) => c.client.state !== 'open')
        .map((c) => {
          const context = c.client.actor.getSnapshot().context;
          return {
            user: c.user,
            state: JSON.stringify(c.client.actor.getSnapshot().value),
            ...(context.failure ? { failure: context.failure } : {}),
            ...(context.lastClose ? { lastClose: context.lastClose } : {}),
          };
        }),
      durationMs: Date.now() - started,
    };
  } finally {
    await stopEverything();
  }
}

/** The summary table of a run, for people. */
export function chaosTable(report: ChaosReport): string {
  const c = report.counts;
  const rows: Array<[string, string | number]> = [
    ['sent', c.sent],
    ['acked', c.acked],
    ['failed (reported to the caller)', c.failed],
    ['failed and never delivered', c.failedUndelivered],
    ['pending at the end', c.pending],
    ['deliveries owed (acked × addressed)', c.expected],
    ['delivered', c.delivered],
    ['lost', c.lost],
    ['duplicated', c.duplicated],
    ['out of order', c.outOfOrder],
    ['stray', c.stray],
    ['own room messages handed back', c.echoes],
    ['gaps reported (could not be resumed)', report.gaps],
    ['  deliveries recovered by a history reload', c.recovered],
    ['client errors by code', JSON.stringify(report.errors)],
    ['faults', report.faults.length],
    ['  gateway SIGKILL', report.faults.filter((f) => f.kind === 'gateway SIGKILL').length],
    ['  nats SIGKILL', report.faults.filter((f) => f.kind === 'nats SIGKILL').length],
    ['  gateway SIGTERM (rolling)', report.faults.filter((f) => f.kind.startsWith('gateway SIGTERM')).length],
    ['gateway starts retried (exited before ready)', report.gatewayRestartRetries],
    ['resumes', report.storm.resumes],
    ['peak connects/s on one node (rolling restarts)', report.storm.peakConnectsPerSecondPerNode],
    ['p99 time to resume, all faults (ms)', report.storm.p99ResumeMs],
    ['p99 time to resume, rolling restarts (ms)', report.storm.p99ResumeRollingMs],
    ['duration (s)', (report.durationMs / 1000).toFixed(1)],
    ['verdict', report.problems.length === 0 ? 'nothing lost, nothing duplicated' : report.problems.join('; ')],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lost = report.lostSamples.map((l) => `  lost: ${l.id} → ${l.client} (${JSON.stringify(l.to)})`);
  const notOpen = report.notOpen.map((c) => `  not open at the end: ${c.user} ${c.state} ${JSON.stringify(c.failure ?? c.lastClose ?? {})}`);
  return [...rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`), ...lost, ...notOpen].join('\n');
}
