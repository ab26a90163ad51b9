/**
 * A client's recording (the SDK's `record` option) replays with `chatgate replay` like a node's:
 * recorded against a real gateway through a connect, a lost socket, a reconnect with backoff and
 * a close; replayed by the CLI as a child process. A recording with one event changed diverges.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStack, type Stack } from '../harness/stack.ts';
import { closeClients, nextEvent, opened, sdkClient, trackedWebSocket, type SdkSocket } from '../harness/sdk.ts';
import { runChatgate } from '../harness/process.ts';

let stack: Stack;
let dir: string;
beforeAll(async () => {
  stack = await startStack();
  dir = await mkdtemp(join(tmpdir(), 'chatgate-client-replay-'));
});
afterAll(async () => {
  closeClients();
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('client replay', () => {
  it('client replay - a recorded client replays through its machine; a changed event diverges', async () => {
    const lines: string[] = [];
    const sockets: SdkSocket[] = [];
    const client = sdkClient({
      urls: [stack.gateways[0]!.url],
      token: () => stack.token('replayed'),
      record: (line) => lines.push(line),
      minDelayMs: 50,
      maxDelayMs: 100,
      WebSocket: trackedWebSocket((s) => sockets.push(s)),
    });
    await opened(client);
    const resumed = nextEvent(client, 'resumed');
    sockets[0]!.terminate();
    await resumed;
    const closed = nextEvent(client, 'state', (s) => s.state === 'closed');
    client.close();
    await closed;

    expect(lines.join('\n')).not.toMatch(/eyJ/);
    const file = join(dir, 'client.jsonl');
    await writeFile(file, `${lines.join('\n')}\n`);
    const ok = await runChatgate(['replay', file]);
    expect(ok.stdout + ok.stderr).toMatch(/client/);
    expect(ok.code).toBe(0);

    // The lost socket's close code changed from 1006 to 1008: the replay stops instead of reconnecting.
    const tampered = lines.map((l) => (l.includes('"socket.closed"') && l.includes('1006') ? l.replace('1006', '1008') : l));
    const bad = join(dir, 'tampered.jsonl');
    await writeFile(bad, `${tampered.join('\n')}\n`);
    const diverged = await runChatgate(['replay', bad]);
    expect(diverged.code).toBe(1);
  });
});
