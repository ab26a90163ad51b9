/**
 * A recording sink that cannot keep up (docs/replay.md, "Costs and bounds"): a file more than
 * 8 MiB behind ends the recording of the actors concerned at a step boundary, and the node goes
 * on. The file is a FIFO that nobody reads until the end, so the writes pile up in the node.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseRecordings } from '../../src/observe/recording.ts';
import { startStack, type Stack } from '../harness/stack.ts';

let stack: Stack | undefined;
let dir: string;
let fifo: string;
let reader: ReturnType<typeof createReadStream> | undefined;
let text = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chatgate-recording-sink-'));
  fifo = join(dir, 'slow.jsonl');
  execFileSync('mkfifo', [fifo]);
  // A reader that opens the FIFO (so the node's open succeeds) and does not read yet.
  reader = createReadStream(fifo, { encoding: 'utf8', highWaterMark: 64 * 1024 });
  reader.pause();
  reader.on('data', (d) => void (text += d as string));
});
afterAll(async () => {
  reader?.resume();
  await stack?.stop();
  reader?.destroy();
  await rm(dir, { recursive: true, force: true });
});

it('recording - a file sink more than 8 MiB behind ends the recordings at a step boundary; sessions go on', async () => {
  // The session's send and byte buckets lifted (as other flood tests do): this test is about the
  // sink, and since issue 9 every rate-limited send is a strike that ends the session with 1008.
  stack = await startStack({
    gateway: {
      recording: { to: 'file', path: fifo, raw: true },
      limits: { sendsPerSecond: 1e6, sendBurst: 1e6, sendBytesPerSecond: 1e9, sendBytesBurst: 1e9 },
      // And the user's budget on the node (finding 7 of the attack review): the flood is one user's.
      userSendBytesPerSecond: 1e9,
      userSendBytesBurst: 1e9,
    },
  });
  const { client, welcome } = await stack.session(0, 'sink-user');
  // Raw recording keeps the bodies: each send is a few kilobytes of lines.
  const body = 'b'.repeat(4000);
  let acked = 0;
  for (let batch = 0; batch < 60; batch++) {
    const ids = Array.from({ length: 50 }, (_, i) => `${batch}-${i}`);
    for (const id of ids) client.send({ type: 'send', id, to: { user: 'nobody-here' }, body });
    for (const id of ids) await client.next((f) => f.type === 'ack' && f.id === id);
    acked += ids.length;
  }
  expect(acked).toBe(3000);
  expect(client.closeCode).toBeUndefined();
  // Now the FIFO is read to its end and the node stops (its sink closes).
  reader!.resume();
  const ended = new Promise<void>((r) => reader!.once('end', () => r()));
  await stack.gateways[0]!.close();
  await ended;
  const { recordings } = parseRecordings(text);
  const recording = recordings.find((r) => r.header.session === welcome.session)!;
  expect(recording).toBeDefined();
  const sends = recording.observations.filter((o) => o.kind === 'event' && o.event?.type === 'frame.send');
  expect(sends.length).toBeGreaterThan(0);
  expect(sends.length).toBeLessThan(3000);
  // A step boundary: the last line of the recording is a state.
  expect(recording.observations.at(-1)!.kind).toBe('state');
});
