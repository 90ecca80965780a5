// wshub browser client: an ES module with no dependencies and no build step.
//
//   import { WsHub, to } from "/ws/wshub.js";      // served by the hub next to its socket path
//   const hub = new WsHub({ groupId: "room-1", userId: "ann" }).connect();
//   hub.on("chat", (message, envelope) => console.log(envelope.userId, message));
//   hub.send("chat", { text: "hello" }, [to.group("room-1")]);
//
// The wire protocol is docs/protocol.md; this module's published shape is docs/client.md, and its
// types are wshub.d.ts, served beside it.

// The module's own address. The hub serves it at `<socket path>/wshub.js`, so the socket's address
// follows from it. (Kept in one place: the tests load a copy with another address put here.)
const MODULE_URL = import.meta.url;

/** What `reconnect: true` means. */
const RECONNECT_DEFAULTS = Object.freeze({
  minDelay: 500,
  maxDelay: 30000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: Infinity,
});

const QUEUE_LIMIT_DEFAULT = 100;
const CONNECT_TIMEOUT_DEFAULT = 10000;

// WebSocket.readyState values (a `WebSocket` option need not define the constants).
const OPEN = 1;

/** An error this client throws or reports; `code` says which, in a word. */
export class WsHubError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "WsHubError";
    this.code = code;
  }
}

/** A recipient value: a string, or a number read as its decimal text (protocol §2). */
function recipientValue(type, value) {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  throw new WsHubError(
    "invalid_recipient",
    `wshub: a "${type}" recipient needs a string value, not ${describe(value)}`,
  );
}

function recipient(type, value) {
  return { type, value: recipientValue(type, value) };
}

/**
 * Recipient builders, one per type of protocol §2. Each returns `{ type, value }`.
 * Include types (`all`, `group`, `user`, `connection`) are united; exclude types (`allBut…`)
 * are taken away, from everyone when there is no include recipient.
 */
export const to = Object.freeze({
  /** Every connection. */
  all: () => ({ type: "all", value: "" }),
  /** The connections in group `groupId`. */
  group: (groupId) => recipient("group", groupId),
  /** Every connection (tab, device) of user `userId`. */
  user: (userId) => recipient("user", userId),
  /** The one connection with this id (a `connectionId` from `__connected`). */
  connection: (connectionId) => recipient("connection", connectionId),
  /** Everyone but the connections of user `userId`. */
  allButUser: (userId) => recipient("allButUser", userId),
  /** Everyone but the connections in group `groupId`. */
  allButGroup: (groupId) => recipient("allButGroup", groupId),
  /** Everyone but the connection with this id. */
  allButConnection: (connectionId) => recipient("allButConnection", connectionId),
});

function describe(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : `${typeof value} ${String(value)}`;
}

/** Calls a handler; what it throws is reported and does not stop the other handlers. */
function callSafely(handler, ...args) {
  try {
    handler(...args);
  } catch (error) {
    if (typeof globalThis.reportError === "function") globalThis.reportError(error);
    else console.error("wshub: a handler threw:", error);
  }
}

function requireFunction(handler, what) {
  if (typeof handler !== "function") {
    throw new TypeError(`wshub: ${what} needs a function, not ${describe(handler)}`);
  }
}

/** The socket address: `url` as given (relative to the page, http(s) becoming ws(s)), or the
 *  address this module was served from without its file name. */
function socketUrl(url) {
  let resolved;
  try {
    if (url !== undefined && url !== null && url !== "") {
      resolved = new URL(String(url), globalThis.location?.href);
    } else {
      resolved = new URL(MODULE_URL);
      if (resolved.protocol !== "http:" && resolved.protocol !== "https:") {
        throw new WsHubError(
          "no_url",
          `wshub: this module was loaded from ${resolved.protocol} (${MODULE_URL}), so the ` +
            "socket's address cannot be derived from it: pass `url` (such as " +
            '"ws://127.0.0.1:3000/ws")',
        );
      }
      // `<socket path>/wshub.js` → `<socket path>`
      resolved.pathname = resolved.pathname.replace(/\/[^/]*$/, "") || "/";
      resolved.search = "";
    }
  } catch (error) {
    if (error instanceof WsHubError) throw error;
    throw new WsHubError("invalid_url", `wshub: ${JSON.stringify(String(url))} is no URL`);
  }
  resolved.hash = "";
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  if (resolved.protocol !== "ws:" && resolved.protocol !== "wss:") {
    throw new WsHubError(
      "invalid_url",
      `wshub: the socket's URL must be ws:, wss:, http: or https:, not ${resolved.href}`,
    );
  }
  return resolved.href;
}

function withIdentity(url, groupId, userId) {
  const params = [];
  if (groupId !== undefined && groupId !== null) {
    params.push(`groupId=${encodeURIComponent(String(groupId))}`);
  }
  if (userId !== undefined && userId !== null) {
    params.push(`userId=${encodeURIComponent(String(userId))}`);
  }
  if (params.length === 0) return url;
  const separator = url.includes("?") ? (/[?&]$/.test(url) ? "" : "&") : "?";
  return url + separator + params.join("&");
}

function reconnectOptions(option) {
  if (option === false) return null;
  if (option === undefined || option === true) return { ...RECONNECT_DEFAULTS };
  if (typeof option !== "object" || option === null) {
    throw new TypeError("wshub: `reconnect` is a boolean or an object of backoff options");
  }
  const options = { ...RECONNECT_DEFAULTS };
  for (const key of Object.keys(RECONNECT_DEFAULTS)) {
    if (option[key] === undefined) continue;
    const value = option[key];
    if (typeof value !== "number" || Number.isNaN(value) || value < 0) {
      throw new TypeError(`wshub: reconnect.${key} must be a number of at least 0`);
    }
    options[key] = value;
  }
  if (options.jitter > 1) throw new TypeError("wshub: reconnect.jitter is a fraction, 0 to 1");
  if (options.factor < 1) throw new TypeError("wshub: reconnect.factor must be at least 1");
  if (options.maxDelay < options.minDelay) options.maxDelay = options.minDelay;
  return options;
}

/** The wait before reconnect attempt `attempt` (1, 2, …): exponential, capped, and up to
 *  `jitter` of it taken off at random so that clients dropped together do not return together. */
function backoff(options, attempt) {
  const exponential = options.minDelay * options.factor ** (attempt - 1);
  const capped = Math.min(options.maxDelay, exponential);
  return Math.round(capped * (1 - options.jitter * Math.random()));
}

/** The five fields of an envelope, with the protocol's defaults (protocol §1). */
function normalize(envelope) {
  return {
    action: typeof envelope.action === "string" ? envelope.action : "",
    message: envelope.message === undefined || envelope.message === null ? "" : envelope.message,
    groupId: typeof envelope.groupId === "string" ? envelope.groupId : "",
    userId: typeof envelope.userId === "string" ? envelope.userId : "",
    recipients: Array.isArray(envelope.recipients) ? envelope.recipients : [],
  };
}

/**
 * A connection to a wshub hub that comes back by itself.
 *
 * States: `"idle"` until `connect()`, then `"connecting"`, `"open"` (once `__connected` has
 * arrived), `"reconnecting"` (waiting for, or making, another attempt after a drop), and
 * `"closed"` (after `close()`, when reconnecting is off or has given up).
 */
export class WsHub {
  #baseUrl;
  #url;
  #groupId;
  #userId;
  #reconnect;
  #queueLimit;
  #connectTimeout;
  #WebSocket;

  #state = "idle";
  #ws = null;
  #info = null;
  #queue = [];
  #attempt = 0;
  #retryTimer = null;
  #connectTimer = null;
  #closedForGood = false;
  #onOnline = null;

  #handlers = new Map();
  #errorHandlers = new Set();
  #stateHandlers = new Set();

  /**
   * @param {object} [options]
   * @param {string} [options.url] the socket's URL; by default, where this module came from
   * @param {string} [options.userId] sent in the query string; omit it to rely on cookies
   * @param {string} [options.groupId] sent in the query string
   * @param {boolean|object} [options.reconnect] backoff options, `true` (defaults) or `false`
   * @param {number} [options.queueLimit] envelopes kept while not open (100)
   * @param {number} [options.connectTimeout] ms for an attempt to reach "open" (10000)
   * @param {Function} [options.WebSocket] a WebSocket constructor instead of the global one
   */
  constructor(options = {}) {
    if (options === null || typeof options !== "object") {
      throw new TypeError("wshub: the WsHub options are an object");
    }
    this.#groupId = options.groupId ?? undefined;
    this.#userId = options.userId ?? undefined;
    this.#baseUrl = socketUrl(options.url);
    this.#url = withIdentity(this.#baseUrl, this.#groupId, this.#userId);
    this.#reconnect = reconnectOptions(options.reconnect);
    const queueLimit = options.queueLimit ?? QUEUE_LIMIT_DEFAULT;
    if (typeof queueLimit !== "number" || !(queueLimit >= 0)) {
      throw new TypeError("wshub: queueLimit must be a number of at least 0");
    }
    this.#queueLimit = queueLimit;
    const connectTimeout = options.connectTimeout ?? CONNECT_TIMEOUT_DEFAULT;
    if (typeof connectTimeout !== "number" || !(connectTimeout > 0)) {
      throw new TypeError("wshub: connectTimeout must be a number of milliseconds above 0");
    }
    this.#connectTimeout = connectTimeout;
    this.#WebSocket = options.WebSocket ?? undefined;
  }

  /** `"idle" | "connecting" | "open" | "reconnecting" | "closed"` */
  get state() {
    return this.#state;
  }

  /** This connection's id, from `__connected`; `null` while not open. */
  get connectionId() {
    return this.#info ? this.#info.connectionId : null;
  }

  /** `{ connectionId, userId, groupId }` from `__connected`; `null` while not open. */
  get info() {
    return this.#info ? { ...this.#info } : null;
  }

  /** The URL the socket connects to, with the query string. */
  get url() {
    return this.#url;
  }

  /** How many envelopes wait to be sent. */
  get queued() {
    return this.#queue.length;
  }

  /** Starts connecting; after a drop, reconnects with backoff until `close()`. Returns `this`.
   *  While waiting to reconnect, it tries at once. */
  connect() {
    if (this.#closedForGood) {
      throw new WsHubError("closed", "wshub: this hub was closed; make a new WsHub");
    }
    if (this.#retryTimer !== null) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    } else if (this.#ws !== null) {
      return this;
    }
    this.#listenForOnline();
    this.#openSocket();
    return this;
  }

  /** Closes for good: no reconnect; envelopes still queued are not sent (each is reported to the
   *  `onError` handlers with code `"closed"`); `send` and `connect` throw `"closed"` from now on. */
  close() {
    if (this.#closedForGood) return;
    this.#closedForGood = true;
    this.#clearTimers();
    this.#stopListeningForOnline();
    const ws = this.#ws;
    this.#ws = null;
    this.#info = null;
    if (ws !== null) {
      detach(ws);
      try {
        ws.close(1000, "closed by the client");
      } catch {
        // Already closing.
      }
    }
    const dropped = this.#queue.splice(0);
    for (const text of dropped) {
      this.#reportError(
        { code: "closed", detail: "the hub was closed before this envelope could be sent" },
        normalize(JSON.parse(text)),
      );
    }
    this.#setState("closed", { code: 1000, reason: "closed by the client", dropped: dropped.length });
  }

  /**
   * Sends an envelope `{ action, message, groupId, userId, recipients }`.
   *
   * `message` is any JSON value and is sent as such (an object arrives as an object). While the
   * hub is not open the envelope is queued, up to `queueLimit`, and sent in order once it is.
   *
   * @throws {WsHubError} `"queue_full"` when the queue is at its bound, `"closed"` after
   *   `close()`, `"invalid_message"` when the message cannot be made JSON.
   */
  send(action, message = "", recipients = []) {
    if (typeof action !== "string") {
      throw new TypeError(`wshub: send(action, …) needs a string action, not ${describe(action)}`);
    }
    if (!Array.isArray(recipients)) {
      throw new TypeError("wshub: recipients are an array (use the `to` builders)");
    }
    this.sendEnvelope({ action, message, recipients });
  }

  /** Sends a whole envelope object; missing fields take the protocol's defaults, and groupId and
   *  userId default to this connection's. Other properties are not sent. */
  sendEnvelope(envelope) {
    if (envelope === null || typeof envelope !== "object" || Array.isArray(envelope)) {
      throw new TypeError(`wshub: an envelope is an object, not ${describe(envelope)}`);
    }
    if (this.#closedForGood) {
      throw new WsHubError("closed", "wshub: this hub was closed; nothing more can be sent");
    }
    const normalized = normalize(envelope);
    if (typeof envelope.groupId !== "string") {
      normalized.groupId = this.#info?.groupId ?? String(this.#groupId ?? "");
    }
    if (typeof envelope.userId !== "string") {
      normalized.userId = this.#info?.userId ?? String(this.#userId ?? "");
    }
    let text;
    try {
      text = JSON.stringify(normalized);
    } catch (error) {
      throw new WsHubError("invalid_message", `wshub: the message is not JSON: ${error.message}`);
    }
    this.#sendText(text);
  }

  /**
   * Calls `handler(message, envelope)` for each envelope with this action. `"*"` receives every
   * envelope, the hub's own (`__connected`, `__error`) included. Returns a function that
   * unsubscribes.
   */
  on(action, handler) {
    if (typeof action !== "string") throw new TypeError("wshub: on(action, …) needs a string");
    requireFunction(handler, "on(action, handler)");
    let handlers = this.#handlers.get(action);
    if (handlers === undefined) {
      handlers = new Set();
      this.#handlers.set(action, handlers);
    }
    handlers.add(handler);
    return () => this.off(action, handler);
  }

  /** Removes a handler added with `on`. */
  off(action, handler) {
    const handlers = this.#handlers.get(action);
    if (handlers === undefined) return;
    handlers.delete(handler);
    if (handlers.size === 0) this.#handlers.delete(action);
  }

  /**
   * Calls `handler({ code, detail }, envelope)` for each `__error` envelope the hub sends this
   * connection (protocol §6: `invalid_envelope`, `forbidden`, `rate_limited`, a forward's
   * failure…), and for each queued envelope that `close()` drops (code `"closed"`, with that
   * envelope). Returns a function that unsubscribes.
   */
  onError(handler) {
    requireFunction(handler, "onError(handler)");
    this.#errorHandlers.add(handler);
    return () => this.#errorHandlers.delete(handler);
  }

  /**
   * Calls `handler(state, info)` on each change of state, and for each reconnect attempt that is
   * scheduled. `info`: for "connecting", `{ url }`; for "open", `{ connectionId, userId,
   * groupId }`; for "reconnecting", `{ attempt, delay, code, reason }`; for "closed",
   * `{ code, reason }` (plus `dropped` after `close()`, `attempts` when reconnecting gave up).
   * Returns a function that unsubscribes.
   */
  onState(handler) {
    requireFunction(handler, "onState(handler)");
    this.#stateHandlers.add(handler);
    return () => this.#stateHandlers.delete(handler);
  }

  // ---- the socket ----

  #openSocket() {
    const WebSocketClass = this.#WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketClass !== "function") {
      throw new WsHubError(
        "no_websocket",
        "wshub: there is no WebSocket here; pass the `WebSocket` option (a constructor)",
      );
    }
    if (this.#state !== "reconnecting") this.#setState("connecting", { url: this.#url });
    let ws;
    try {
      ws = new WebSocketClass(this.#url);
    } catch (error) {
      // A malformed URL or a refused scheme: no retry can help.
      this.#setState("closed", { code: 1006, reason: `cannot open the socket: ${error.message}` });
      throw new WsHubError("invalid_url", `wshub: cannot open ${this.#url}: ${error.message}`);
    }
    this.#ws = ws;
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = null;
      if (this.#ws === ws) this.#lost(ws, 4000, "no __connected within the connect timeout");
    }, this.#connectTimeout);
    ws.onmessage = (event) => {
      if (this.#ws === ws) this.#receive(ws, event.data);
    };
    ws.onclose = (event) => {
      if (this.#ws === ws) this.#lost(ws, event.code, event.reason);
    };
    ws.onerror = () => {
      // Browsers follow an error with a close event; some WebSocket implementations do not when
      // the connection could not be made, so a socket that never opened counts as lost here.
      if (this.#ws === ws && ws.readyState !== OPEN) {
        this.#lost(ws, 1006, "the connection could not be made");
      }
    };
  }

  #receive(ws, data) {
    if (typeof data !== "string") return; // the hub sends text frames only
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      console.warn("wshub: ignored a frame that is not JSON:", data.slice(0, 200));
      return;
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return;
    const envelope = normalize(parsed);

    if (envelope.action === "__connected") {
      const message = envelope.message !== null && typeof envelope.message === "object"
        ? envelope.message
        : {};
      this.#info = {
        connectionId: String(message.connectionId ?? ""),
        userId: String(message.userId ?? ""),
        groupId: String(message.groupId ?? ""),
      };
      if (this.#connectTimer !== null) {
        clearTimeout(this.#connectTimer);
        this.#connectTimer = null;
      }
      this.#attempt = 0;
      this.#flush(ws);
      this.#setState("open", { ...this.#info });
    } else if (envelope.action === "__error") {
      const message = envelope.message !== null && typeof envelope.message === "object"
        ? envelope.message
        : { detail: String(envelope.message) };
      const error = { code: String(message.code ?? "error"), detail: String(message.detail ?? "") };
      this.#reportError(error, envelope);
    }
    this.#dispatch(envelope.action, envelope);
    this.#dispatch("*", envelope);
  }

  #dispatch(action, envelope) {
    const handlers = this.#handlers.get(action);
    if (handlers === undefined) return;
    for (const handler of [...handlers]) callSafely(handler, envelope.message, envelope);
  }

  #reportError(error, envelope) {
    for (const handler of [...this.#errorHandlers]) callSafely(handler, { ...error }, envelope);
  }

  #sendText(text) {
    const ws = this.#ws;
    if (ws !== null && this.#state === "open" && ws.readyState === OPEN && this.#queue.length === 0) {
      ws.send(text);
      return;
    }
    if (this.#queue.length >= this.#queueLimit) {
      throw new WsHubError(
        "queue_full",
        `wshub: not connected, and ${this.#queue.length} envelope(s) already wait to be sent ` +
          `(queueLimit ${this.#queueLimit})`,
      );
    }
    this.#queue.push(text);
    if (ws !== null && this.#state === "open") this.#flush(ws);
  }

  /** Sends what waits, in order, while the socket takes it. */
  #flush(ws) {
    while (this.#queue.length > 0 && ws.readyState === OPEN) {
      ws.send(this.#queue[0]);
      this.#queue.shift();
    }
  }

  /** The socket is gone (or never came): reconnect later, or stop. */
  #lost(ws, code, reason) {
    detach(ws);
    if (ws.readyState !== 3) {
      try {
        ws.close();
      } catch {
        // Closing already.
      }
    }
    this.#ws = null;
    this.#info = null;
    if (this.#connectTimer !== null) {
      clearTimeout(this.#connectTimer);
      this.#connectTimer = null;
    }
    const reconnect = this.#reconnect;
    if (reconnect === null) {
      this.#stopListeningForOnline();
      this.#setState("closed", { code, reason });
      return;
    }
    const attempt = this.#attempt + 1;
    if (attempt > reconnect.maxAttempts) {
      this.#attempt = 0;
      this.#stopListeningForOnline();
      this.#setState("closed", { code, reason, attempts: attempt - 1 });
      return;
    }
    this.#attempt = attempt;
    const delay = backoff(reconnect, attempt);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      try {
        this.#openSocket();
      } catch (error) {
        callSafely(() => {
          throw error;
        });
      }
    }, delay);
    this.#setState("reconnecting", { attempt, delay, code, reason }, true);
  }

  #setState(state, info, always = false) {
    if (this.#state === state && !always) return;
    this.#state = state;
    for (const handler of [...this.#stateHandlers]) callSafely(handler, state, info);
  }

  #clearTimers() {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#retryTimer = null;
    this.#connectTimer = null;
  }

  /** In a browser, coming back online ends the wait for the next attempt. */
  #listenForOnline() {
    if (this.#onOnline !== null || typeof globalThis.addEventListener !== "function") return;
    this.#onOnline = () => {
      if (this.#retryTimer !== null) this.connect();
    };
    globalThis.addEventListener("online", this.#onOnline);
  }

  #stopListeningForOnline() {
    if (this.#onOnline === null) return;
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#onOnline = null;
  }
}

function detach(ws) {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
}

// ---------------------------------------------------------------------------------------------
// West Wind Web Connection compatibility
//
// A page written for Web Connection's `web-connection-websocket.js` works against wshub when only
// its import (or script) URL changes. Its names, argument order and message shape are those of
// Web Connection's documentation ("Setting up Web Sockets in the Web Browser"); docs/client.md
// says what differs.
// ---------------------------------------------------------------------------------------------

/** The message object of `createBroadcastMessage`: an envelope with `addRecipient`. */
export class WebConnectionMessage {
  constructor(action = "", message = "", groupId = "", userId = "") {
    this.action = action;
    this.message = message;
    this.groupId = groupId;
    this.userId = userId;
    this.recipients = [];
  }

  /** Adds `{ type, value }` to the recipients (`type` defaults to `"user"`); returns `this`. */
  addRecipient(value, type = "user") {
    this.recipients.push({ type: String(type), value: recipientValue(String(type), value) });
    return this;
  }

  toJSON() {
    return {
      action: this.action,
      message: this.message,
      groupId: this.groupId,
      userId: this.userId,
      recipients: this.recipients,
    };
  }
}

/**
 * Web Connection's browser socket class, on wshub: `tryConnect(reconnect, groupId, userId)`, the
 * `onMessageHandler` / `onOpenHandler` / `onCloseHandler` / `onErrorHandler` properties,
 * `createBroadcastMessage(action, message)` and `send(msg)`.
 */
export class WebConnectionWebSocket {
  #options;

  /**
   * @param {object} [options] not in Web Connection: `{ url, WebSocket, reconnect, queueLimit }`
   *   for `WsHub` (the URL defaults to where this module was served from)
   */
  constructor(options = {}) {
    this.#options = { ...options };
    /** @type {null | ((msg: object) => void)} every envelope but the hub's own `__…` ones */
    this.onMessageHandler = null;
    /** @type {null | ((ev: object) => void)} each time the connection is open */
    this.onOpenHandler = null;
    /** @type {null | ((ev: object) => void)} each time the socket closes or fails to open */
    this.onCloseHandler = null;
    /** @type {null | ((ev: object) => void)} `__error` envelopes from the hub */
    this.onErrorHandler = null;
    this.groupId = "";
    this.userId = "";
    /** @type {WsHub | null} the connection underneath, once `tryConnect` has run */
    this.hub = null;
  }

  /** Connects as `groupId` / `userId` (both optional) and, when `reconnect` is true, comes back
   *  by itself after a drop. Calling it again replaces the connection. Returns `this`. */
  tryConnect(reconnect = true, groupId = "", userId = "") {
    if (this.hub !== null) this.hub.close();
    this.groupId = groupId ?? "";
    this.userId = userId ?? "";
    const { url, WebSocket, queueLimit, connectTimeout } = this.#options;
    const hub = new WsHub({
      url,
      WebSocket,
      queueLimit,
      connectTimeout,
      groupId: this.groupId === "" ? undefined : this.groupId,
      userId: this.userId === "" ? undefined : this.userId,
      reconnect: reconnect ? (this.#options.reconnect ?? true) : false,
    });
    this.hub = hub;
    hub.on("*", (_message, envelope) => {
      if (envelope.action.startsWith("__")) return;
      if (typeof this.onMessageHandler === "function") callSafely(this.onMessageHandler, envelope);
    });
    hub.onError((error, envelope) => {
      // Always an `__error` envelope, also for a message that close() dropped.
      const errorEnvelope = envelope.action === "__error"
        ? envelope
        : { action: "__error", message: error, groupId: "", userId: "", recipients: [] };
      if (typeof this.onErrorHandler === "function") callSafely(this.onErrorHandler, errorEnvelope);
      else console.warn(`wshub: ${error.code}: ${error.detail}`);
    });
    hub.onState((state, info) => {
      if (this.hub !== hub) return;
      if (state === "open") {
        if (typeof this.onOpenHandler === "function") {
          callSafely(this.onOpenHandler, { type: "open", ...info });
        }
      } else if (state === "reconnecting" || state === "closed") {
        if (typeof this.onCloseHandler === "function") {
          callSafely(this.onCloseHandler, { type: "close", ...info });
        }
      }
    });
    hub.connect();
    return this;
  }

  /** A message object `{ action, message, groupId, userId, recipients }` with
   *  `addRecipient(value, type)`; groupId and userId start as `tryConnect`'s. */
  createBroadcastMessage(action, message) {
    return new WebConnectionMessage(action ?? "", message ?? "", this.groupId, this.userId);
  }

  /** Sends a message object (or its JSON text). Queued while the socket is not open yet. */
  send(msg) {
    if (this.hub === null) {
      throw new WsHubError("not_connected", "wshub: call tryConnect() before send()");
    }
    let envelope = msg;
    if (typeof msg === "string") {
      try {
        envelope = JSON.parse(msg);
      } catch {
        throw new WsHubError("invalid_envelope", "wshub: send(text) needs an envelope's JSON");
      }
    }
    if (envelope !== null && typeof envelope === "object" && typeof envelope.toJSON === "function") {
      envelope = envelope.toJSON();
    }
    this.hub.sendEnvelope(envelope);
  }

  /** Not in Web Connection: closes for good. */
  close() {
    if (this.hub !== null) this.hub.close();
  }
}

// A Web Connection page may use the class as a global: loaded with
// `<script type="module" src="/ws/wshub.js">`, this module defines it (unless the page has one).
if (typeof globalThis.WebConnectionWebSocket === "undefined") {
  globalThis.WebConnectionWebSocket = WebConnectionWebSocket;
}
