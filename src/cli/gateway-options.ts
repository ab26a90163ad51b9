/**
 * The gateway's options from the command line: shared by `chatgate gateway` and `chatgate dev`.
 * Checks between options that the table in src/config.ts cannot express are made here.
 */
import { OptionError, type CommandConfig } from '../config.ts';
import type { GatewayOptions } from '../gateway/gateway.ts';
import type { Logger } from '../log.ts';

/** Gateway options shared by `gateway` and `dev`. */
export function gatewayOptions(config: CommandConfig<'gateway'> | CommandConfig<'dev'>, log: Logger): GatewayOptions {
  // A send frame must fit in the byte bucket, or the largest allowed frame could never be sent.
  if (config.sendBytesBurst < config.maxMessageBytes) {
    throw new OptionError('--send-bytes-burst (SEND_BYTES_BURST) must be at least --max-message-bytes (MAX_MESSAGE_BYTES)');
  }
  if (config.userSendBytesBurst < config.maxMessageBytes) {
    throw new OptionError('--user-send-bytes-burst (USER_SEND_BYTES_BURST) must be at least --max-message-bytes (MAX_MESSAGE_BYTES)');
  }
  return {
    authTimeoutMs: config.authTimeoutMs,
    authRequestTimeoutMs: config.authRequestTimeoutMs,
    maxMessageBytes: config.maxMessageBytes,
    maxBufferedBytes: config.maxBufferedBytes,
    allowedOrigins: config.allowedOrigins,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    drainGraceMs: config.drainGraceMs,
    drainWindowMs: config.drainWindowMs,
    degradedPolicy: config.degradedPolicy,
    recheckPerSecond: config.recheckPerSecond,
    rules: { issuer: config.issuer, audience: config.audience, maxLifetimeS: config.maxTokenLifetimeS },
    maxConnections: config.maxConnections,
    handshakesPerIpPerSecond: config.handshakesPerIpPerSecond,
    trustProxy: config.trustProxy,
    maxSessionsPerUser: config.maxSessionsPerUser,
    userSendBytesPerSecond: config.userSendBytesPerSecond,
    userSendBytesBurst: config.userSendBytesBurst,
    maxSessionsPerIp: config.maxSessionsPerIp,
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    clockToleranceS: config.clockToleranceS,
    metricsToken: config.metricsToken,
    apiToken: config.apiToken,
    presenceMaxUsers: config.presenceMaxUsers,
    presenceHeartbeatMs: config.presenceHeartbeatMs,
    presenceNodeTimeoutMs: config.presenceNodeTimeoutMs,
    recording: recordingOptions(config),
    delivery: config.delivery,
    history: {
      maxAgeS: config.historyMaxAgeS,
      maxPerTarget: config.historyMaxPerTarget,
      dedupeWindowS: config.dedupeWindowS,
      replicas: config.streamReplicas,
    },
    limits: {
      expiryWarningMs: config.expiryWarningMs,
      sendsPerSecond: config.sendsPerSecond,
      sendBurst: config.sendBurst,
      sendBytesPerSecond: config.sendBytesPerSecond,
      sendBytesBurst: config.sendBytesBurst,
      maxStrikes: config.maxStrikes,
      maxRooms: config.maxRoomsPerSession,
      signalsPerSecond: config.signalsPerSecond,
      signalBurst: config.signalBurst,
    },
    log,
  };
}

/** `--record-to` with its filters; a filter without a target is a mistake. */
function recordingOptions(config: CommandConfig<'gateway'> | CommandConfig<'dev'>): GatewayOptions['recording'] {
  if (!config.recordTo) {
    if (config.recordUser !== undefined || config.recordSession !== undefined) {
      throw new OptionError('--record-user and --record-session need --record-to (RECORD_TO)');
    }
    return undefined;
  }
  return { ...config.recordTo, user: config.recordUser, session: config.recordSession };
}
