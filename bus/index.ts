/**
 * bus/: the message bus between gateways (ROUTER) and executors (DEALER). Public surface.
 */
export { BusRouter, creditsNow } from './router.ts';
export type { BusRouterOptions, BusRouterHandlers, ExecutorPeer } from './router.ts';
export { BusDealer } from './dealer.ts';
export type { BusDealerOptions, BusDealerHandlers } from './dealer.ts';
export { ControlChannel } from './control.ts';
export type { ControlChannelOptions, ControlChannelHandlers } from './control.ts';
export { hasNamedEndpoints, ownEndpoints, resolveEndpoints } from './discovery.ts';
export type { LookupAll } from './discovery.ts';
export { generateCurveKeyPair, isCurveKey, z85Encode, ZapAuthenticator } from './curve.ts';
export type { CurveKeyPair, CurveServerOptions, CurveClientOptions } from './curve.ts';
export { encodeFrames, decodeFrames, FrameError } from './frames.ts';
export { MessageType, MESSAGE_TYPE_NAMES } from './messages.ts';
export { LOG_ROW_COLUMNS, LogRowEncoder, RowBytes, countLogRows, decodeLogRows, utf8Boundary } from './log-rows.ts';
export type { CarriedLogLines, DecodedLogRow, LogLineBytes, LogLines } from './log-rows.ts';
export type {
  BusMessage,
  HeaderOf,
  FunctionSpec,
  FunctionLimits,
  HelloHeader,
  CreditHeader,
  InvokeHeader,
  ResultHeader,
  StartType,
  LogLine,
  LogStream,
  LogsHeader,
  ContainerEvent,
  ContainerEventKind,
  EventsHeader,
  HeartbeatHeader,
  ByeHeader,
  DeployHeader,
  UndeployHeader,
  FetchBundleHeader,
  BundleHeader,
} from './messages.ts';
