/**
 * The option table (src/config.ts): defaults as documented, values parsed and validated once,
 * a bad value named by its flag and its variable.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { commandOptions, OptionError, parseConfig, type OptionSpec } from '../../src/config.ts';
import { defaults } from '../../src/defaults.ts';

const protocol = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

/** The defaults of docs/protocol.md's "Settings a client may meet" table, by variable. */
function documentedDefaults(): Map<string, string> {
  const start = protocol.indexOf('## Settings a client may meet');
  // Up to the next section: "## Limits" has a table of the same shape, of what each limit counts.
  const section = protocol.slice(start, protocol.indexOf('\n## ', start + 1));
  const out = new Map<string, string>();
  for (const [, vars, value] of section.matchAll(/^\| ((?:`[A-Z_]+`(?:, )?)+) \| ([^|]+) \|/gm)) {
    for (const [, name] of vars!.matchAll(/`([A-Z_]+)`/g)) out.set(name!, value!.trim().replaceAll('`', ''));
  }
  return out;
}

/** The defaults of one command, as parseConfig gives them. */
function defaultsOf(command: keyof typeof commandOptions) {
  const specs = commandOptions[command] as Record<string, OptionSpec>;
  return parseConfig(command, Object.fromEntries(Object.entries(specs).map(([k, s]) => [k, s.default]))) as Record<string, unknown>;
}

describe('config', () => {
  it('config - every default of the gateway is the one docs/protocol.md documents', () => {
    const documented = documentedDefaults();
    expect(documented.size).toBeGreaterThanOrEqual(16);
    const specs = commandOptions.gateway as Record<string, OptionSpec>;
    const byEnv = new Map(Object.values(specs).map((s) => [s.env, s]));
    for (const [env, value] of documented) {
      const spec = byEnv.get(env);
      expect(spec, `${env} is a gateway option`).toBeDefined();
      // An option without a default is documented as unset, with what that means in brackets.
      if (spec!.default === undefined) expect(value, env).toMatch(/^unset( \(.*\))?$/);
      else expect(spec!.default, env).toBe(value);
    }
  });

  it('config - every default parses with its own schema', () => {
    for (const command of Object.keys(commandOptions) as Array<keyof typeof commandOptions>) {
      expect(() => defaultsOf(command), command).not.toThrow();
    }
    expect(defaultsOf('gateway')).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      authTimeoutMs: 5000,
      trustProxy: 0,
      degradedPolicy: 'local',
      shutdownTimeoutMs: 30_000,
      drainGraceMs: 5000,
      drainWindowMs: 10_000,
      recheckPerSecond: 20,
      sendBytesPerSecond: 65_536,
      sendBytesBurst: 262_144,
      maxStrikes: 10,
      maxSessionsPerUser: 100,
      maxSessionsPerIp: 1000,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      clockToleranceS: 5,
      maxTokenLifetimeS: 86_400,
    });
    // The option table writes src/defaults.ts's values as the user would type them: parsed, they are the same.
    const gateway = defaultsOf('gateway');
    const shared = Object.keys(defaults).filter((k) => k in commandOptions.gateway);
    expect(shared.length).toBeGreaterThanOrEqual(20);
    for (const key of shared) expect(gateway[key], key).toEqual(defaults[key as keyof typeof defaults]);
    expect(defaultsOf('nats')).toMatchObject({ port: 4222, host: '127.0.0.1' });
    expect(defaultsOf('dev')).toMatchObject({ natsPort: 4222 });
  });

  it('config - values are coerced, unset options stay unset, and the result is frozen', () => {
    const config = parseConfig('gateway', {
      port: '0',
      allowedOrigins: ' https://a.example , ,https://b.example',
      trustProxy: 'true',
      recordTo: 'file:/tmp/x.jsonl',
    });
    expect(config).toMatchObject({
      port: 0,
      allowedOrigins: ['https://a.example', 'https://b.example'],
      trustProxy: 1,
      recordTo: { to: 'file', path: '/tmp/x.jsonl' },
    });
    // TRUST_PROXY is a count of proxies since issue 9; true and false still mean 1 and 0.
    expect(parseConfig('gateway', { trustProxy: 'false' }).trustProxy).toBe(0);
    expect(parseConfig('gateway', { trustProxy: '3' }).trustProxy).toBe(3);
    expect(parseConfig('gateway', { recordTo: 'nats' }).recordTo).toEqual({ to: 'nats' });
    expect(parseConfig('gateway', {}).metricsToken).toBeUndefined();
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('config - a bad value names the flag and the variable', () => {
    const bad: Array<[keyof typeof commandOptions, Record<string, unknown>, RegExp]> = [
      ['gateway', { port: 'abc' }, /^invalid --port \(PORT\): /],
      ['gateway', { port: '65536' }, /--port \(PORT\)/],
      ['gateway', { authTimeoutMs: '0' }, /--auth-timeout-ms \(AUTH_TIMEOUT_MS\)/],
      ['gateway', { degradedPolicy: 'maybe' }, /--degraded-policy \(DEGRADED_POLICY\)/],
      ['gateway', { trustProxy: 'yes' }, /--trust-proxy \(TRUST_PROXY\)/],
      ['gateway', { trustProxy: '100' }, /--trust-proxy \(TRUST_PROXY\)/],
      ['gateway', { trustProxy: '-1' }, /--trust-proxy \(TRUST_PROXY\)/],
      ['gateway', { metricsToken: 'x'.repeat(15) }, /^invalid --metrics-token \(METRICS_TOKEN\): use at least 16 characters$/],
      ['gateway', { recordTo: 'file:' }, /--record-to \(RECORD_TO\): nats, or file:PATH/],
      ['gateway', { recordUser: 'a\uD800' }, /--record-user \(RECORD_USER\)/],
      ['nats', { port: '-2' }, /--port \(NATS_PORT\)/],
    ];
    for (const [command, raw, message] of bad) {
      let error: unknown;
      try {
        parseConfig(command, raw);
      } catch (err) {
        error = err;
      }
      expect(error, JSON.stringify(raw)).toBeInstanceOf(OptionError);
      expect((error as Error).message, JSON.stringify(raw)).toMatch(message);
    }
    expect(parseConfig('gateway', { metricsToken: 'x'.repeat(16) }).metricsToken).toBe('x'.repeat(16));
    expect(parseConfig('nats', { port: '-1' }).port).toBe(-1);
  });

  it('config - every option has a flag, a distinct variable and a description', () => {
    for (const [command, specs] of Object.entries(commandOptions) as Array<[string, Record<string, OptionSpec>]>) {
      const envs = Object.values(specs).map((s) => s.env);
      expect(new Set(envs).size, command).toBe(envs.length);
      for (const [key, spec] of Object.entries(specs)) {
        expect(spec.flag, `${command}.${key}`).toMatch(/^--[a-z-]+( <[a-z]+>)?$/);
        expect(spec.env, `${command}.${key}`).toMatch(/^[A-Z_]+$/);
        expect(spec.description.length, `${command}.${key}`).toBeGreaterThan(0);
      }
    }
  });

  it('config - each command has the options its docs name', () => {
    const keys = Object.fromEntries(Object.entries(commandOptions).map(([c, o]) => [c, Object.keys(o).sort()]));
    // The NATS credentials (issue 9) of every command that connects to the bus.
    const natsCredentials = ['natsCreds', 'natsNkeySeedFile', 'natsPassword', 'natsTlsCa', 'natsTlsCert', 'natsTlsKey', 'natsToken', 'natsUser'];
    expect(keys.auth).toEqual(
      ['audience', 'clockToleranceS', 'home', 'issuer', 'jwksUrl', 'logLevel', 'maxTokenLifetimeS', 'nats', ...natsCredentials, 'revocationReplicas'].sort(),
    );
    expect(keys.token).toEqual(['aud', 'claims', 'home', 'iss', 'jti', 'nbf', 'rooms', 'sub', 'ttl']);
    expect(keys.jwks).toEqual(['home']);
    expect(keys.revoke).toEqual(['home', 'jti', 'nats', ...natsCredentials, 'sub'].sort());
    expect(keys.nats).toEqual(['clusterPort', 'home', 'host', 'insecure', 'jetstream', 'port', 'routes', 'serverName']);
    expect(keys.machines).toEqual(['out']);
    expect(keys.replay).toEqual(['session', 'toleranceMs']);
    const hardening = ['trustProxy', 'sendBytesPerSecond', 'sendBytesBurst', 'maxStrikes', 'maxSessionsPerUser', 'maxSessionsPerIp', 'headersTimeoutMs', 'requestTimeoutMs', 'clockToleranceS', 'maxTokenLifetimeS'];
    expect(keys.gateway).toEqual(
      expect.arrayContaining(['adminPort', 'adminHost', 'adminToken', 'recordTo', 'recordUser', 'recordSession', 'logLevel', ...natsCredentials, ...hardening]),
    );
    expect(keys.dev).toEqual(expect.arrayContaining(['natsPort', 'adminPort', 'adminToken', 'logLevel', ...hardening]));
    expect(defaultsOf('token')).toMatchObject({ ttl: 3600, aud: 'chatgate', iss: 'chatgate' });
    expect(defaultsOf('dev')).toMatchObject({ port: 8080, adminPort: 0 });
    expect(defaultsOf('replay')).toMatchObject({ toleranceMs: 100 });
  });

  it('config - the values each enum and list accepts', () => {
    for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']) {
      expect(parseConfig('gateway', { logLevel: level }).logLevel).toBe(level);
    }
    expect(() => parseConfig('gateway', { logLevel: 'loud' })).toThrow(OptionError);
    expect(parseConfig('gateway', { degradedPolicy: 'reject' }).degradedPolicy).toBe('reject');
    expect(parseConfig('gateway', { adminToken: 'a'.repeat(16) }).adminToken).toBe('a'.repeat(16));
    expect(() => parseConfig('gateway', { adminToken: 'a'.repeat(15) })).toThrow(/--admin-token \(ADMIN_TOKEN\): use at least 16 characters/);
    expect(parseConfig('gateway', { nats: 'nats://a.example:4222, nats://b.example:4222' }).nats).toEqual([
      'nats://a.example:4222',
      'nats://b.example:4222',
    ]);
    expect(() => parseConfig('gateway', { nats: ' , ' })).toThrow(/--nats \(NATS_URL\)/);
    expect(parseConfig('revoke', { jti: 'j'.repeat(256) }).jti).toBe('j'.repeat(256));
    expect(() => parseConfig('revoke', { jti: 'j'.repeat(257) })).toThrow(OptionError);
    expect(() => parseConfig('revoke', { jti: '' })).toThrow(OptionError);
    expect(() => parseConfig('gateway', { recordTo: 'xfile:a' })).toThrow(OptionError);
  });
});

