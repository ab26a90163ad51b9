/**
 * The SDK (src/client/) in Node tests: `ws` as its WebSocket, with a hook on every socket it opens
 * (to record the frames it writes, or to cut the socket as a network would), and bounded waits
 * on the client's events (never fixed sleeps).
 */
import { WebSocket } from 'ws';
import { connect, type ChatClient, type ClientEvents, type ClientOptions, type WebSocketConstructor } from '../../src/client/index.ts';

export interface SdkSocket extends WebSocket {
  /** Every frame the client wrote on this socket, parsed. */
  written: Array<Record<string, unknown>>;
}

/** A `ws` WebSocket class that tells `onSocket` of every socket and records what is written. */
export function trackedWebSocket(onSocket: (socket: SdkSocket) => void = () => {}): WebSocketConstructor {
  return class Tracked extends WebSocket {
    written: Array<Record<string, unknown>> = [];
    constructor(url: string, protocols: string[]) {
      super(url, protocols);
      // An error before open (refused port) is followed by a close, which the client handles.
      this.on('error', () => {});
      onSocket(this as unknown as SdkSocket);
    }
    override send(data: string): void {
      this.written.push(JSON.parse(data) as Record<string, unknown>);
      super.send(data);
    }
  } as unknown as WebSocketConstructor;
}

/** Clients made here; `closeClients()` closes them all (tests call it in afterEach). */
const made = new Set<ChatClient>();

export function sdkClient(options: Omit<ClientOptions, 'WebSocket'> & { WebSocket?: WebSocketConstructor }): ChatClient {
  const client = connect({ WebSocket: WebSocket as unknown as WebSocketConstructor, ...options });
  made.add(client);
  return client;
}

export function closeClients(): void {
  for (const c of made) c.close();
  made.clear();
}

/** Waits (bounded) for the first `event` of `client` that matches. */
export function nextEvent<K extends keyof ClientEvents>(
  client: ChatClient,
  event: K,
  match: (value: ClientEvents[K]) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<ClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching ${event} event within ${timeoutMs} ms (state ${client.state})`));
    }, timeoutMs);
    const off = client.on(event, (value) => {
      if (!match(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Resolves when `client` is open with its rooms re-joined (at once if it is). */
export async function opened(client: ChatClient, timeoutMs = 10_000): Promise<void> {
  if (client.state === 'open' && client.resumed) return;
  await nextEvent(client, 'resumed', () => true, timeoutMs);
}
