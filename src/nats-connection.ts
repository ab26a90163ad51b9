/**
 * Connecting to NATS and letting go of it, the same way for every chatgate process.
 */
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';

export function connectNats(servers: string | string[], name: string): Promise<NatsConnection> {
  // noAsyncTraces: nats.js would otherwise make two Error objects per request for stack traces.
  return connect({ servers, name, maxReconnectAttempts: -1, reconnectTimeWait: 500, noAsyncTraces: true });
}

/**
 * Drains the connection (pending messages go out, subscriptions end) within `deadlineMs`, then
 * closes it whatever the state: a node cut off from NATS must still be able to stop.
 */
export async function closeNats(nc: NatsConnection, deadlineMs = 2000): Promise<void> {
  if (nc.isClosed()) return;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, deadlineMs);
  });
  // A drain that fails (the connection is gone) is followed by the close below.
  await Promise.race([nc.drain().catch(() => {}), deadline]);
  clearTimeout(timer);
  if (!nc.isClosed()) await nc.close();
}
