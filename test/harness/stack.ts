/**
 * A whole chatgate on this machine for integration tests: real nats-server processes (one, or a
 * 3-node cluster, with JetStream), the auth service and gateway nodes in-process, each gateway on its own NATS
 * server, plus helpers to mint tokens and open clients. `stop()` ends all of it, clients first.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAuthService, type AuthService } from '../../src/auth/service.ts';
import { startGateway, type Gateway, type GatewayOptions } from '../../src/gateway/gateway.ts';
import { loadSigningKeys, type SigningKeys } from '../../src/auth/keys.ts';
import { defaultClaimRules, mintToken, type MintOptions } from '../../src/auth/tokens.ts';
import { startNats, startNatsCluster, type NatsServer } from './nats.ts';
import { TestClient, type ConnectOptions, type Frame } from './client.ts';

export interface StackOptions {
  /** Gateway nodes. @default 1 */
  nodes?: number;
  /** A 3-node NATS cluster (gateways on different servers) instead of one server. */
  cluster?: boolean;
  gateway?: Partial<GatewayOptions>;
  /** Start the auth service. @default true */
  auth?: boolean;
  /** MAX_TOKEN_LIFETIME_S of the auth service and the gateways. @default 86400 */
  maxTokenLifetimeS?: number;
  /** Copies of the revocations bucket (3 for a cluster test of R3). @default 1 */
  revocationReplicas?: number;
}

export interface Stack {
  nats: NatsServer[];
  gateways: Gateway[];
  auth: AuthService | undefined;
  keys: SigningKeys;
  home: string;
  token(sub: string, options?: Omit<MintOptions, 'sub'>): Promise<string>;
  /** A client of gateway `node`; closed by `stop()`. */
  client(node: number, options?: ConnectOptions): TestClient;
  /** A client of gateway `node` that has received `welcome`. */
  session(node: number, sub: string, options?: Omit<MintOptions, 'sub'>): Promise<{ client: TestClient; welcome: Frame }>;
  startAuth(): Promise<AuthService>;
  /** One more gateway node (on the servers in turn); returns its index in `gateways`. */
  addGateway(): Promise<number>;
  stop(): Promise<void>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const home = await mkdtemp(join(tmpdir(), 'chatgate-test-'));
  const clients: TestClient[] = [];
  const gateways: Gateway[] = [];
  const authServices: AuthService[] = [];
  let stopNats: () => Promise<void> = async () => {};
  let nats: NatsServer[] = [];

  const stop = async () => {
    for (const c of clients) c.close();
    await Promise.all(gateways.map((g) => g.close()));
    await Promise.all(authServices.map((a) => a.close()));
    await stopNats();
    await rm(home, { recursive: true, force: true });
  };

  try {
    if (options.cluster) {
      const cluster = await startNatsCluster(3);
      nats = cluster.servers;
      stopNats = cluster.stop;
    } else {
      const server = await startNats();
      nats = [server];
      stopNats = server.stop;
    }
    const keys = await loadSigningKeys(home);
    const rules = { ...defaultClaimRules, maxLifetimeS: options.maxTokenLifetimeS };
    // The auth service sits on the last server; gateway i on server i.
    const startAuth = async () => {
      const service = await startAuthService({
        natsUrl: nats[nats.length - 1]!.url,
        home,
        rules,
        revocationReplicas: options.revocationReplicas ?? 1,
      });
      authServices.push(service);
      return service;
    };
    const auth = options.auth === false ? undefined : await startAuth();
    const addGateway = async () => {
      const i = gateways.length;
      gateways.push(
        await startGateway({
          natsUrl: nats[i % nats.length]!.url,
          port: 0,
          host: '127.0.0.1',
          nodeId: `node-${i}`,
          // Every test client comes from 127.0.0.1: the per-IP limit has its own test.
          handshakesPerIpPerSecond: 1_000_000,
          rules,
          ...options.gateway,
        }),
      );
      return i;
    };
    for (let i = 0; i < (options.nodes ?? 1); i++) await addGateway();
    const token = (sub: string, mint?: Omit<MintOptions, 'sub'>) => mintToken(keys, { sub, ...mint });
    const client = (node: number, connect?: ConnectOptions) => {
      const c = new TestClient(gateways[node]!.url, connect);
      clients.push(c);
      return c;
    };
    return {
      nats,
      gateways,
      auth,
      keys,
      home,
      token,
      client,
      async session(node, sub, mint) {
        const c = client(node, { token: await token(sub, mint) });
        const welcome = await c.type('welcome');
        return { client: c, welcome };
      },
      startAuth,
      addGateway,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
