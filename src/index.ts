/**
 * chatgate's public API, for embedding a gateway or an auth service in another process, and for
 * tests that replay recordings. Everything else in src/ is internal.
 */
export { connectionMachine, defaultConnectionLimits, MAX_TIMER_MS } from '../machines/connection.machine.ts';
export type {
  ConnectionContext,
  ConnectionEvent,
  ConnectionInput,
  ConnectionLimits,
  Destination,
  FrameId,
  RoomGrant,
  VerifiedClaims,
  VerifyResult,
} from '../machines/connection.machine.ts';
export {
  circuitBreakerMachine,
  defaultBreakerOptions,
  canCall,
  requestCall,
  requestTicket,
  openWaitFor,
} from '../machines/circuit-breaker.machine.ts';
export type { BreakerOptions, BreakerEvent, BreakerEmitted, FailureKind } from '../machines/circuit-breaker.machine.ts';
export { CloseCode, ErrorCode, closeCodeMeaning, errorCodeMeaning } from '../machines/codes.ts';
export { startGateway, upgradeToken, SUBPROTOCOL } from './gateway/gateway.ts';
export type { Gateway, GatewayOptions } from './gateway/gateway.ts';
export type { ChatMessage, Published, DeliveryMode } from './durable/publish.ts';
export { startAuthService } from './auth/service.ts';
export type { AuthService, AuthServiceOptions } from './auth/service.ts';
export { startNatsServer, findNatsServer } from './bus/nats-server.ts';
export type { NatsServer, NatsServerOptions } from './bus/nats-server.ts';
export { loadSigningKeys } from './auth/keys.ts';
export { mintToken, createTokenVerifier } from './auth/tokens.ts';
export type { MintOptions, ClaimRules, TokenVerifier } from './auth/tokens.ts';
export { subjects, encodeId, decodeId, isValidId } from './subjects.ts';
export { ChatgateError, ChatgateErrorCode } from './errors.ts';
export { replay, formatReplay } from './observe/replay.ts';
export type { ReplayResult, ReplayStep, Divergence } from './observe/replay.ts';
export { parseRecordings, captureRecordings } from './observe/recording.ts';
export { Observers, redact } from './observe/observe.ts';
export type { Observation } from './observe/observe.ts';
export { startAdminServer } from './admin/server.ts';
