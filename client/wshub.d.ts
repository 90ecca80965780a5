// Types of the wshub browser client (wshub.js, served beside this file). See docs/client.md.

/** A recipient of protocol §2. Include types are united; `allBut…` types are taken away. */
export interface Recipient {
  type:
    | "all"
    | "group"
    | "user"
    | "connection"
    | "allButUser"
    | "allExceptUser"
    | "allButGroup"
    | "allButConnection"
    | (string & {});
  value: string;
}

/** Every message in every direction (protocol §1). */
export interface Envelope<M = any> {
  action: string;
  /** Any JSON value, passed through untouched: an object stays an object. */
  message: M;
  groupId: string;
  userId: string;
  /** Whom it is for when sent; always `[]` in an envelope the hub delivers (protocol §1). */
  recipients: Recipient[];
  /**
   * Only on a `__reply` or `__error` that answers a `request()` nobody waits for any more (it
   * timed out): the answers to pending requests settle their promises and reach no handler.
   */
  requestId?: string;
}

/** `__connected`'s message: who this connection is. */
export interface ConnectionInfo {
  /** 32 lowercase hexadecimal digits. */
  connectionId: string;
  userId: string;
  groupId: string;
}

/** `__error`'s message (protocol §6), or `{ code: "closed" }` for an envelope `close()` dropped. */
export interface HubErrorInfo {
  code:
    | "invalid_envelope"
    | "forbidden"
    | "rate_limited"
    | "forward_failed"
    | "closed"
    | (string & {});
  detail: string;
}

/**
 * - `"idle"`: before `connect()`
 * - `"connecting"`: the first attempt (or one after `connect()`, `online`)
 * - `"open"`: `__connected` has arrived
 * - `"reconnecting"`: waiting for, or making, another attempt after a drop
 * - `"offline"`: the browser said it lost the network; the next attempt is on `online`
 * - `"stopped"`: the hub closed with a code 4400-4499 (logged out, forbidden), or `beforeConnect`
 *   returned `false`; no attempt until `connect()`
 * - `"closed"`: after `close()` (for good), or reconnecting is off or gave up (`connect()` again)
 */
export type WsHubState =
  | "idle"
  | "connecting"
  | "open"
  | "reconnecting"
  | "offline"
  | "stopped"
  | "closed";

export interface ReconnectOptions {
  /** ms before the first attempt after a drop. Default 500. */
  minDelay?: number;
  /** ms the wait never exceeds. Default 30000. */
  maxDelay?: number;
  /** Each attempt waits this many times longer than the one before. Default 2. */
  factor?: number;
  /** Up to this fraction (0 to 1) of each wait is taken off at random. Default 0.5. */
  jitter?: number;
  /** Attempts in a row before giving up (state "closed"). Default Infinity. */
  maxAttempts?: number;
}

export interface HeartbeatOptions {
  /** ms of silence from the hub after which the client sends an `__ping`. Default 25000. */
  interval?: number;
  /** ms the `__ping` may go unanswered (with nothing else heard) before the socket is dropped
   *  and reconnected. Default 10000. */
  timeout?: number;
}

/** What `beforeConnect` is told. */
export interface BeforeConnectContext {
  /** 0 for a first attempt (after `connect()`, or `online`), n for reconnect attempt n. */
  attempt: number;
  /** The configured URL (`url` option with `userId` and `groupId`). */
  url: string;
}

/** What `beforeConnect` may return for this attempt. */
export interface BeforeConnectResult {
  /** Replaces the `url` option for this attempt; `userId` and `groupId` are still added. */
  url?: string;
  /** Query parameters set on this attempt's URL (replacing those of the same name);
   *  `null` or `undefined` removes one. */
  query?: Record<string, string | number | boolean | null | undefined>;
}

/** Where the client hears `online`/`offline` and, on its `document`, `visibilitychange`. */
export interface WsHubEventSource {
  addEventListener(type: string, listener: (event: any) => void): void;
  removeEventListener(type: string, listener: (event: any) => void): void;
  document?: {
    visibilityState: string;
    addEventListener(type: string, listener: (event: any) => void): void;
    removeEventListener(type: string, listener: (event: any) => void): void;
  };
}

export interface RequestOptions {
  /** Whom the message is for (relayed messages; a forwarded one's application decides).
   *  Default `[]`: the default group. */
  recipients?: Recipient[];
  /** ms from the call to the answer before rejecting with `"timeout"`. Default 15000;
   *  `Infinity` for none. */
  timeout?: number;
}

export interface WsHubOptions {
  /**
   * The socket's URL (`ws:`, `wss:`, or `http(s):`, which becomes `ws(s):`; relative URLs are
   * resolved against the page). Default: where this module was served from, without
   * `/wshub.js`: the module at `https://host/ws/wshub.js` connects to `wss://host/ws`.
   */
  url?: string;
  /** Sent as `?userId=`; omit it to rely on the application's cookies / identity resolver. */
  userId?: string;
  /** Sent as `?groupId=`. */
  groupId?: string;
  /** `true` (the default) reconnects with the default backoff; `false` never reconnects. */
  reconnect?: boolean | ReconnectOptions;
  /** `true` (the default) pings a silent hub with the defaults; `false` never pings. */
  heartbeat?: boolean | HeartbeatOptions;
  /**
   * Awaited before every attempt (the first and each reconnect): a page refreshes a token or
   * query parameters here. Returns this attempt's `{ url, query }`, nothing for the configured
   * URL, or `false` to make no attempt (state `"stopped"`). A throw fails the attempt, which is
   * reported in the `"reconnecting"` info, and backoff goes on. Counted in `connectTimeout`.
   */
  beforeConnect?: (
    context: BeforeConnectContext,
  ) => BeforeConnectResult | false | void | Promise<BeforeConnectResult | false | void>;
  /** Envelopes kept while not open; one more throws `queue_full`. Default 100. */
  queueLimit?: number;
  /** ms an attempt may take to reach "open" (`__connected`) before it is dropped. Default 10000. */
  connectTimeout?: number;
  /** A WebSocket constructor to use instead of `globalThis.WebSocket` (tests, Node). */
  WebSocket?: any;
  /** Default `globalThis` (the page's `window`); tests pass an `EventTarget`. */
  window?: WsHubEventSource;
}

/**
 * Info passed with each state (see `WsHub.onState`). `code` is a close code, or 4000 for a socket
 * the client dropped itself (connect timeout, unanswered `__ping`, offline), or 0 when no socket
 * was involved (`beforeConnect` failed or returned `false`).
 */
export type StateInfo =
  | { url: string }
  | ConnectionInfo
  | { attempt: number; delay: number; code: number; reason: string; error?: unknown }
  | { code: number; reason: string; dropped?: number; attempts?: number; error?: unknown };

export class WsHub {
  constructor(options?: WsHubOptions);

  /** "idle" until `connect()`; "open" once `__connected` has arrived. */
  readonly state: WsHubState;
  /** This connection's id; `null` while not open. */
  readonly connectionId: string | null;
  /** `__connected`'s message; `null` while not open. */
  readonly info: ConnectionInfo | null;
  /** The URL the socket connects to, query string included. */
  readonly url: string;
  /** Envelopes waiting to be sent. */
  readonly queued: number;

  /** Starts connecting, and reconnecting after drops (exponential backoff with jitter). While
   *  waiting to reconnect, offline or stopped, it tries at once. */
  connect(): this;
  /** Closes for good: no reconnect; queued envelopes are dropped (reported to `onError`), and
   *  waiting requests reject with `closed`. */
  close(): void;

  /**
   * Sends `{ action, message, groupId, userId, recipients }`; queued while not open.
   * @throws {WsHubError} `queue_full`, `closed` (after `close()`), `invalid_message`
   */
  send(action: string, message?: any, recipients?: Recipient[]): void;
  /** Sends a whole envelope; missing fields take the protocol's defaults. */
  sendEnvelope(envelope: Partial<Envelope>): void;
  /**
   * Sends `{ action, message, recipients }` with a fresh `requestId` and resolves with the
   * `message` of the hub's `__reply` (`null` for a relayed message). Queued while not open.
   * Never throws; rejects with a `WsHubError`: the hub's code (`forbidden`, `invalid_envelope`,
   * `rate_limited`, `forward_failed`, the application's own), `timeout`, `disconnected` (the
   * socket was lost first; a sent message may or may not have been handled), `closed`,
   * `queue_full`, `invalid_message`; or a `TypeError` for wrong arguments.
   */
  request<R = any>(action: string, message?: any, options?: RequestOptions): Promise<R>;

  /** Handles envelopes with this action (`"*"`: every envelope). Returns an unsubscribe function. */
  on<M = any>(action: string, handler: (message: M, envelope: Envelope<M>) => void): () => void;
  off(action: string, handler: (message: any, envelope: Envelope) => void): void;
  /** Handles `__error` envelopes, but those that answer a pending `request()`. Returns an
   *  unsubscribe function. */
  onError(handler: (error: HubErrorInfo, envelope: Envelope) => void): () => void;
  /** Handles state changes and each scheduled reconnect. Returns an unsubscribe function. */
  onState(handler: (state: WsHubState, info?: StateInfo) => void): () => void;
}

export class WsHubError extends Error {
  constructor(code: string, message: string, detail?: string);
  /** `queue_full`, `closed`, `invalid_message`, `invalid_url`, `no_url`, `no_websocket`,
   *  `invalid_recipient`, `invalid_envelope`, `not_connected`; from `request()` also `timeout`,
   *  `disconnected` and the codes of the hub's `__error` (`forbidden`, `rate_limited`,
   *  `forward_failed`…). */
  code: string;
  /** The hub's own words for an error it sent; otherwise the same as `message`. */
  detail: string;
}

/** Recipient builders, one per type of protocol §2. */
export const to: {
  readonly all: () => Recipient;
  readonly group: (groupId: string | number) => Recipient;
  readonly user: (userId: string | number) => Recipient;
  readonly connection: (connectionId: string) => Recipient;
  readonly allButUser: (userId: string | number) => Recipient;
  readonly allButGroup: (groupId: string | number) => Recipient;
  readonly allButConnection: (connectionId: string) => Recipient;
};

// ---- West Wind Web Connection compatibility ----

/** What `createBroadcastMessage` returns: an envelope with `addRecipient`. */
export class WebConnectionMessage implements Envelope {
  constructor(action?: string, message?: any, groupId?: string, userId?: string);
  action: string;
  message: any;
  groupId: string;
  userId: string;
  recipients: Recipient[];
  /** Adds `{ type, value }`; `type` defaults to "user". Returns this message. */
  addRecipient(value: string | number, type?: Recipient["type"]): this;
  toJSON(): Envelope;
}

export interface WebConnectionOpenEvent extends ConnectionInfo {
  type: "open";
}

export interface WebConnectionCloseEvent {
  type: "close";
  code: number;
  reason: string;
  attempt?: number;
  delay?: number;
}

export interface WebConnectionWebSocketOptions {
  url?: string;
  WebSocket?: any;
  reconnect?: boolean | ReconnectOptions;
  queueLimit?: number;
  connectTimeout?: number;
  heartbeat?: boolean | HeartbeatOptions;
  beforeConnect?: WsHubOptions["beforeConnect"];
  window?: WsHubEventSource;
}

/** Web Connection's browser socket class, on wshub. */
export class WebConnectionWebSocket {
  /** Web Connection's constructor takes no argument; the options are wshub's addition. */
  constructor(options?: WebConnectionWebSocketOptions);
  /** Every envelope except the hub's own (`__connected`, `__error`). */
  onMessageHandler: ((msg: Envelope) => void) | null;
  /** Each time the connection is open (again). */
  onOpenHandler: ((ev: WebConnectionOpenEvent) => void) | null;
  /** Each time the socket closes or an attempt fails (and on "offline" and "stopped"). */
  onCloseHandler: ((ev: WebConnectionCloseEvent) => void) | null;
  /** `__error` envelopes from the hub (without a handler they are logged). */
  onErrorHandler: ((msg: Envelope<HubErrorInfo>) => void) | null;
  groupId: string;
  userId: string;
  /** The connection underneath, once `tryConnect` has run. */
  hub: WsHub | null;
  tryConnect(reconnect?: boolean, groupId?: string, userId?: string): this;
  createBroadcastMessage(action: string, message?: any): WebConnectionMessage;
  /** @throws {WsHubError} `not_connected` before `tryConnect`, and `WsHub.send`'s errors. */
  send(msg: Partial<Envelope> | WebConnectionMessage | string): void;
  /** wshub's addition: closes for good. */
  close(): void;
}

type WebConnectionWebSocketClass = typeof WebConnectionWebSocket;

declare global {
  /** Defined by wshub.js when it is loaded, unless the page has one already. */
  var WebConnectionWebSocket: WebConnectionWebSocketClass;
}
