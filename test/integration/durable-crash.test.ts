/**
 * Resume after the recipient's gateway dies: a real `chatgate gateway` process (DELIVERY=durable,
 * the default) is killed with SIGKILL while its client is away; the client resumes on another
 * gateway node with the last position it saw and gets everything acknowledged meanwhile, once.
 * Positions live on the client, so no node's death can lose them.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFleet, type Fleet } from '../harness/fleet.ts';
import { startGateway, type Gateway } from '../../src/gateway/gateway.ts';
import { TestClient } from '../harness/client.ts';

let fleet: Fleet;
let other: Gateway | undefined;
const clients: TestClient[] = [];
beforeAll(async () => {
  fleet = await startFleet();
  other = await startGateway({ natsUrl: fleet.nats.url, natsHome: fleet.home, port: 0, host: '127.0.0.1', nodeId: 'other' });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await other?.close();
  await fleet?.stop();
});

const clientOn = async (url: string, user: string, query?: Record<string, string>) => {
  const c = new TestClient(url, { token: await fleet.token(user), query });
  clients.push(c);
  return c;
};

it('durable crash - a client whose gateway was SIGKILLed resumes on another node with nothing lost and nothing twice', async () => {
  const sender = await clientOn(other!.url, 'cr-sam');
  await sender.type('welcome');
  const victim = await clientOn(fleet.wsUrl, 'cr-ann');
  await victim.type('welcome');
  const m0 = await sender.request({ type: 'send', id: 0, to: { user: 'cr-ann' }, body: 'm0' });
  const got = await victim.next((f) => f.body === 'm0');
  expect(got.pos).toBe(m0.pos);

  fleet.gateway.child.kill('SIGKILL');
  expect(await victim.closedWith(10_000)).toBe(1006);
  for (const body of ['m1', 'm2', 'm3']) {
    expect(await sender.request({ type: 'send', id: body, to: { user: 'cr-ann' }, body })).toMatchObject({ type: 'ack' });
  }
  const back = await clientOn(other!.url, 'cr-ann', { since: got.pos as string });
  expect((await back.type('welcome')).recovered).toBe(true);
  await back.next((f) => f.body === 'm3');
  await sender.request({ type: 'send', id: 'm4', to: { user: 'cr-ann' }, body: 'm4' });
  await back.next((f) => f.body === 'm4');
  expect(back.messages().map((m) => m.body)).toEqual(['m1', 'm2', 'm3', 'm4']);
});
