/**
 * How fast nats-server 2.9 stores chat messages in chatgate's streams, without any gateway: N
 * chains (one per sender, like a session's SendOrder: each publish waits for the previous
 * PubAck) or N × window publishes in flight, each chain to its own user subject. Prints messages
 * per second, the mean PubAck round trip, and nats-server's CPU per 1,000 messages
 * (/proc/<pid>/stat). A tool for docs/durability.md's arithmetic, not part of `npm run bench`.
 *
 *   npx tsx bench/durable-store-rate.ts [--chains 200] [--window 1] [--seconds 5] [--republish true] [--per-subject 1000]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy } from '@nats-io/jetstream';
import { startNatsServer } from '../src/bus/nats-server.ts';
import { PubAcks } from '../src/durable/pub-acks.ts';
import { encodeChatMessage } from '../src/gateway/codec.ts';

const { values } = parseArgs({
  options: {
    chains: { type: 'string', default: '200' },
    window: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '5' },
    republish: { type: 'string', default: 'true' },
    'per-subject': { type: 'string', default: '1000' },
  },
});
const chains = Number(values.chains);
const window = Number(values.window);
const seconds = Number(values.seconds);

const cpuMs = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
};

const dir = await mkdtemp(join(tmpdir(), 'chatgate-store-rate-'));
const server = await startNatsServer({ port: -1, jetstreamDir: dir });
const nc = await connect({ servers: server.url });
try {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: 'RATE',
    subjects: ['rate.msg.user.*'],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_msgs_per_subject: Number(values['per-subject']),
    duplicate_window: 120_000_000_000,
    num_replicas: 1,
    ...(values.republish === 'true' ? { republish: { src: 'rate.msg.user.*', dest: 'rate.user.{{wildcard(1)}}' } } : {}),
  });
  const acks = new PubAcks(nc, 5000);
  const payload = encodeChatMessage('', { msgId: 'x'.repeat(22), from: 'u-sender', to: { user: 'u-r' }, body: 'b'.repeat(100), ts: Date.now() });
  let stored = 0;
  let rttSum = 0;
  let running = true;
  const chain = async (i: number) => {
    const subject = `rate.msg.user.r${i}`;
    while (running) {
      const t = performance.now();
      await acks.publish(subject, payload);
      rttSum += performance.now() - t;
      stored += 1;
    }
  };
  const all = Array.from({ length: chains * window }, (_, i) => chain(i % chains));
  await new Promise((r) => setTimeout(r, 1000));
  const [s0, c0, t0] = [stored, cpuMs(server.pid), performance.now()];
  const r0 = rttSum;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const [s1, c1, t1] = [stored, cpuMs(server.pid), performance.now()];
  const r1 = rttSum;
  running = false;
  await Promise.all(all);
  const n = s1 - s0;
  console.log(
    JSON.stringify({
      chains,
      window,
      republish: values.republish,
      perSubject: Number(values['per-subject']),
      msgsPerS: Math.round(n / ((t1 - t0) / 1000)),
      meanRttMs: Number(((r1 - r0) / n).toFixed(2)),
      natsCpuMsPer1k: Number((((c1 - c0) / n) * 1000).toFixed(1)),
    }),
  );
} finally {
  await nc.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}
