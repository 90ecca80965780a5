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
  code: "invalid_envelope" | "forbidden" | "rate_limited" | "closed" | (string & {});
  detail: string;
}

export type WsHubState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

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
  /** Envelopes kept while not open; one more throws `queue_full`. Default 100. */
  queueLimit?: number;
  /** ms an attempt may take to reach "open" (`__connected`) before it is dropped. Default 10000. */
  connectTimeout?: number;
  /** A WebSocket constructor to use instead of `globalThis.WebSocket` (tests, Node). */
  WebSocket?: any;
}

/** Info passed with each state (see `WsHub.onState`). */
export type StateInfo =
  | { url: string }
  | ConnectionInfo
  | { attempt: number; delay: number; code: number; reason: string }
  | { code: number; reason: string; dropped?: number; attempts?: number };

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

  /** Starts connecting, and reconnecting after drops (exponential backoff with jitter). */
  connect(): this;
  /** Closes for good: no reconnect; queued envelopes are dropped (reported to `onError`). */
  close(): void;

  /**
   * Sends `{ action, message, groupId, userId, recipients }`; queued while not open.
   * @throws {WsHubError} `queue_full`, `closed` (after `close()`), `invalid_message`
   */
  send(action: string, message?: any, recipients?: Recipient[]): void;
  /** Sends a whole envelope; missing fields take the protocol's defaults. */
  sendEnvelope(envelope: Partial<Envelope>): void;

  /** Handles envelopes with this action (`"*"`: every envelope). Returns an unsubscribe function. */
  on<M = any>(action: string, handler: (message: M, envelope: Envelope<M>) => void): () => void;
  off(action: string, handler: (message: any, envelope: Envelope) => void): void;
  /** Handles `__error` envelopes. Returns an unsubscribe function. */
  onError(handler: (error: HubErrorInfo, envelope: Envelope) => void): () => void;
  /** Handles state changes and each scheduled reconnect. Returns an unsubscribe function. */
  onState(handler: (state: WsHubState, info?: StateInfo) => void): () => void;
}

export class WsHubError extends Error {
  constructor(code: string, message: string);
  /** `queue_full`, `closed`, `invalid_message`, `invalid_url`, `no_url`, `no_websocket`,
   *  `invalid_recipient`, `invalid_envelope`, `not_connected`. */
  code: string;
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
}

/** Web Connection's browser socket class, on wshub. */
export class WebConnectionWebSocket {
  /** Web Connection's constructor takes no argument; the options are wshub's addition. */
  constructor(options?: WebConnectionWebSocketOptions);
  /** Every envelope except the hub's own (`__connected`, `__error`). */
  onMessageHandler: ((msg: Envelope) => void) | null;
  /** Each time the connection is open (again). */
  onOpenHandler: ((ev: WebConnectionOpenEvent) => void) | null;
  /** Each time the socket closes or an attempt fails. */
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
