// wshub browser client: an ES module with no dependencies and no build step.
//
//   import { WsHub, to } from "/ws/wshub.js";      // served by the hub next to its socket path
//   const hub = new WsHub({ groupId: "room-1", userId: "ann" }).connect();
//   hub.on("chat", (message, envelope) => console.log(envelope.userId, message));
//   hub.send("chat", { text: "hello" }, [to.group("room-1")]);
//   const answer = await hub.request("history", { since: 0 });   // the hub's __reply
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

/** What `heartbeat: true` means. 25 s of silence stays under the idle timeouts of common
 *  proxies and load balancers (often 30 to 60 s), and 10 s is ample for an `__ping` the hub
 *  answers at once. */
const HEARTBEAT_DEFAULTS = Object.freeze({ interval: 25000, timeout: 10000 });

const QUEUE_LIMIT_DEFAULT = 100;
const CONNECT_TIMEOUT_DEFAULT = 10000;
// Longer than the hub's default forward timeout (10 s), so that a slow handler is reported in the
// hub's own words (`forward_timeout`) rather than as a bare client-side timeout.
const REQUEST_TIMEOUT_DEFAULT = 15000;

// setTimeout fires at once for a delay past 2^31 - 1 ms in browsers and Node, so a longer
// timeout means none.
const MAX_TIMER_MS = 2147483647;

// The close code this client reports for a socket it dropped itself (connect timeout, unanswered
// __ping, the browser going offline): the hub never sends it, and it is outside 4400-4499.
const DROPPED_BY_CLIENT = 4000;

// WebSocket.readyState values (a `WebSocket` option need not define the constants).
const OPEN = 1;
const CLOSED = 3;

/** An error this client throws or reports; `code` says which, in a word. */
export class WsHubError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string} [detail] the hub's own words, for an error the hub sent; else `message`
   */
  constructor(code, message, detail = message) {
    super(message);
    this.name = "WsHubError";
    this.code = code;
    this.detail = detail;
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

/** `url` with each parameter of `query` set (replacing one of the same name) or, when its value
 *  is `null` or `undefined`, removed. Done by hand because URLSearchParams would re-encode the
 *  other parameters too (`%20` becoming `+`, among others): the hub decodes both, but the query
 *  also reaches the application's identity resolver, which may not. */
function withQuery(url, query) {
  const mark = url.indexOf("?");
  const base = mark === -1 ? url : url.slice(0, mark);
  const names = new Set(Object.keys(query));
  const params = (mark === -1 ? "" : url.slice(mark + 1))
    .split("&")
    .filter((param) => param !== "" && !names.has(decodeName(param.split("=")[0])));
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    params.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`);
  }
  return params.length === 0 ? base : `${base}?${params.join("&")}`;
}

function decodeName(name) {
  try {
    return decodeURIComponent(name.replace(/\+/g, " "));
  } catch {
    return name;
  }
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

function heartbeatOptions(option) {
  if (option === false) return null;
  if (option === undefined || option === true) return { ...HEARTBEAT_DEFAULTS };
  if (typeof option !== "object" || option === null) {
    throw new TypeError("wshub: `heartbeat` is `false`, `true` or `{ interval, timeout }` in ms");
  }
  const options = { ...HEARTBEAT_DEFAULTS };
  for (const key of Object.keys(HEARTBEAT_DEFAULTS)) {
    if (option[key] === undefined) continue;
    const value = option[key];
    if (typeof value !== "number" || !(value > 0) || value > MAX_TIMER_MS) {
      throw new TypeError(`wshub: heartbeat.${key} must be a number of milliseconds above 0`);
    }
    options[key] = value;
  }
  return options;
}

/** The wait before reconnect attempt `attempt` (1, 2, …): exponential, capped, and up to
 *  `jitter` of it taken off at random so that clients dropped together do not return together. */
function backoff(options, attempt) {
  const exponential = options.minDelay * options.factor ** (attempt - 1);
  const capped = Math.min(options.maxDelay, exponential);
  return Math.round(capped * (1 - options.jitter * Math.random()));
}

/** `{ code, detail }` of an `__error` envelope (protocol §6). */
function errorInfo(envelope) {
  const message = envelope.message !== null && typeof envelope.message === "object"
    ? envelope.message
    : { detail: String(envelope.message) };
  return { code: String(message.code ?? "error"), detail: String(message.detail ?? "") };
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
 * arrived), `"reconnecting"` (waiting for, or making, another attempt after a drop),
 * `"offline"` (the browser said it lost the network; no attempt until it is back),
 * `"stopped"` (the hub closed with a code 4400-4499: only the user can fix what it says, so no
 * attempt until `connect()`), and `"closed"` (after `close()`, when reconnecting is off or has
 * given up).
 */
export class WsHub {
  #baseUrl;
  #url;
  #groupId;
  #userId;
  #reconnect;
  #heartbeat;
  #beforeConnect;
  #window;
  #queueLimit;
  #connectTimeout;
  #WebSocket;

  #state = "idle";
  #ws = null;
  // The attempt under way, from its start (beforeConnect included) until it is open or lost;
  // callbacks of an attempt that has been replaced or abandoned compare it and do nothing.
  #dialing = null;
  #info = null;
  /** @type {{ text: string, requestId: string | null }[]} */
  #queue = [];
  #attempt = 0;
  #retryTimer = null;
  #connectTimer = null;
  #closedForGood = false;
  #listeners = null;

  #lastRequestId = 0;
  /** @type {Map<string, { action: string, resolve: Function, reject: Function, timer: any,
   *  sent: boolean, item: object | null }>} */
  #pending = new Map();

  #framesHeard = 0;
  #lastHeard = 0;
  #heartbeatTimer = null;
  #pingId = null;

  #handlers = new Map();
  #errorHandlers = new Set();
  #stateHandlers = new Set();

  /**
   * @param {object} [options]
   * @param {string} [options.url] the socket's URL; by default, where this module came from
   * @param {string} [options.userId] sent in the query string; omit it to rely on cookies
   * @param {string} [options.groupId] sent in the query string
   * @param {boolean|object} [options.reconnect] backoff options, `true` (defaults) or `false`
   * @param {boolean|object} [options.heartbeat] `{ interval, timeout }` in ms, `true` or `false`
   * @param {Function} [options.beforeConnect] `async ({ attempt, url }) => ({ url, query } |
   *   false | undefined)`, awaited before each attempt
   * @param {number} [options.queueLimit] envelopes kept while not open (100)
   * @param {number} [options.connectTimeout] ms for an attempt to reach "open" (10000)
   * @param {Function} [options.WebSocket] a WebSocket constructor instead of the global one
   * @param {object} [options.window] where `online`/`offline` (and, on its `document`,
   *   `visibilitychange`) are heard; `globalThis` by default
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
    this.#heartbeat = heartbeatOptions(options.heartbeat);
    const beforeConnect = options.beforeConnect ?? null;
    if (beforeConnect !== null) requireFunction(beforeConnect, "the beforeConnect option");
    this.#beforeConnect = beforeConnect;
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
    this.#window = options.window ?? globalThis;
  }

  /** `"idle" | "connecting" | "open" | "reconnecting" | "offline" | "stopped" | "closed"` */
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

  /** The URL the socket connects to, with the query string (without what `beforeConnect` adds). */
  get url() {
    return this.#url;
  }

  /** How many envelopes (requests included) wait to be sent. */
  get queued() {
    return this.#queue.length;
  }

  /** Starts connecting; after a drop, reconnects with backoff until `close()`. Returns `this`.
   *  While waiting to reconnect, offline or stopped, it tries at once. */
  connect() {
    if (this.#closedForGood) {
      throw new WsHubError("closed", "wshub: this hub was closed; make a new WsHub");
    }
    if (this.#retryTimer !== null) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    } else if (this.#ws !== null || this.#dialing !== null) {
      return this;
    }
    this.#listen();
    this.#dial();
    return this;
  }

  /** Closes for good: no reconnect; envelopes still queued are not sent (each is reported to the
   *  `onError` handlers with code `"closed"`), requests waiting for an answer reject with
   *  `"closed"`; `send`, `request` and `connect` fail with `"closed"` from now on. */
  close() {
    if (this.#closedForGood) return;
    this.#closedForGood = true;
    this.#clearRetry();
    const dropped = this.#queue.splice(0);
    // Before the drop, which would tell the requests on the socket "disconnected".
    this.#failRequests("closed", false);
    this.#drop(1000, "closed by the client");
    this.#unlisten();
    for (const item of dropped) {
      if (item.requestId !== null) continue; // its promise has said so
      this.#reportError(
        { code: "closed", detail: "the hub was closed before this envelope could be sent" },
        normalize(JSON.parse(item.text)),
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
    this.#enqueue({ text: this.#serialize(envelope, null), requestId: null });
  }

  /**
   * Sends `{ action, message, recipients }` with a fresh `requestId` (protocol §4.1) and resolves
   * with the `message` of the hub's `__reply` to it: what the application answered, or `null`
   * for a relayed message.
   *
   * Rejects with a `WsHubError` whose `code` is the hub's (`forbidden`, `invalid_envelope`,
   * `rate_limited`, `forward_failed`, an application's own…) and `detail` its words; or
   * `"timeout"` when no answer came within `timeout` ms of the call; `"disconnected"` when the
   * socket was lost first (a sent message may or may not have been handled); `"closed"` on
   * `close()`; and with `send`'s `"queue_full"` and `"invalid_message"`. It never throws: wrong
   * arguments reject with a `TypeError`. While not open, the request is queued like `send`.
   *
   * @param {string} action
   * @param {*} [message]
   * @param {{ recipients?: object[], timeout?: number }} [options] `timeout` in ms (15000;
   *   `Infinity` for none)
   * @returns {Promise<any>}
   */
  request(action, message = "", options = {}) {
    try {
      if (typeof action !== "string") {
        throw new TypeError(
          `wshub: request(action, …) needs a string action, not ${describe(action)}`,
        );
      }
      if (options === null || typeof options !== "object" || Array.isArray(options)) {
        throw new TypeError("wshub: request's options are `{ recipients, timeout }`");
      }
      const { recipients = [], timeout = REQUEST_TIMEOUT_DEFAULT } = options;
      if (!Array.isArray(recipients)) {
        throw new TypeError("wshub: recipients are an array (use the `to` builders)");
      }
      if (typeof timeout !== "number" || !(timeout > 0)) {
        throw new TypeError("wshub: a request's timeout is a number of milliseconds above 0");
      }
      if (this.#closedForGood) {
        throw new WsHubError("closed", "wshub: this hub was closed; nothing more can be sent");
      }
      const requestId = this.#nextRequestId();
      const item = { text: this.#serialize({ action, message, recipients }, requestId), requestId };
      return new Promise((resolve, reject) => {
        const pending = this.#track(requestId, action, timeout, resolve, reject, item);
        try {
          this.#enqueue(item);
        } catch (error) {
          this.#untrack(requestId, pending);
          reject(error);
        }
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Calls `handler(message, envelope)` for each envelope with this action. `"*"` receives every
   * envelope, the hub's own (`__connected`, `__error`) included, but for the answers that settle
   * a `request()`, which go to its promise alone. Returns a function that unsubscribes.
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
   * failure…) that is not the answer to a pending `request()` (that one rejects its promise
   * instead), and for each queued envelope that `close()` drops (code `"closed"`, with that
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
   * groupId }`; for "reconnecting", `{ attempt, delay, code, reason }` (plus `error` when
   * `beforeConnect` failed); for "offline", "stopped" and "closed", `{ code, reason }` (plus
   * `dropped` after `close()`, `attempts` when reconnecting gave up). Returns a function that
   * unsubscribes.
   */
  onState(handler) {
    requireFunction(handler, "onState(handler)");
    this.#stateHandlers.add(handler);
    return () => this.#stateHandlers.delete(handler);
  }

  // ---- the socket ----

  /** One attempt: `beforeConnect`, when there is one, then the socket. */
  #dial() {
    const WebSocketClass = this.#WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketClass !== "function") {
      throw new WsHubError(
        "no_websocket",
        "wshub: there is no WebSocket here; pass the `WebSocket` option (a constructor)",
      );
    }
    if (this.#state !== "reconnecting") this.#setState("connecting", { url: this.#url });
    const dial = {};
    this.#dialing = dial;
    // The connect timeout covers beforeConnect too: a hook that never settles must not stall
    // reconnecting for good.
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = null;
      if (this.#dialing !== dial) return;
      this.#lost(
        DROPPED_BY_CLIENT,
        this.#ws === null
          ? "beforeConnect did not finish within the connect timeout"
          : "no __connected within the connect timeout",
      );
    }, this.#connectTimeout);

    if (this.#beforeConnect === null) {
      this.#openSocket(WebSocketClass, this.#url, dial, true);
      return;
    }
    const hook = this.#beforeConnect;
    const context = { attempt: this.#attempt, url: this.#url };
    new Promise((resolve) => resolve(hook(context)))
      .then((result) => {
        if (this.#dialing !== dial) return;
        if (result === false) {
          this.#teardown();
          this.#halt("stopped", { code: 0, reason: "beforeConnect returned false" });
          return;
        }
        this.#openSocket(WebSocketClass, this.#attemptUrl(result), dial, false);
      })
      .catch((error) => {
        if (this.#dialing !== dial) return;
        const why = error instanceof Error ? error.message : String(error);
        this.#lost(0, `beforeConnect failed: ${why}`, { error });
      });
  }

  /** The URL for this attempt, from what `beforeConnect` returned. */
  #attemptUrl(result) {
    if (result === undefined || result === null) return this.#url;
    if (typeof result !== "object" || Array.isArray(result)) {
      throw new TypeError(
        `wshub: beforeConnect returns { url, query }, false or nothing, not ${describe(result)}`,
      );
    }
    let url = this.#url;
    if (result.url !== undefined && result.url !== null) {
      url = withIdentity(socketUrl(result.url), this.#groupId, this.#userId);
    }
    if (result.query !== undefined && result.query !== null) {
      if (typeof result.query !== "object" || Array.isArray(result.query)) {
        throw new TypeError("wshub: beforeConnect's `query` is an object of parameters");
      }
      url = withQuery(url, result.query);
    }
    return url;
  }

  #openSocket(WebSocketClass, url, dial, first) {
    let ws;
    try {
      ws = new WebSocketClass(url);
    } catch (error) {
      // A URL beforeConnect chose may be better next time; a configured one never is.
      if (!first) throw error;
      this.#teardown();
      this.#halt("closed", { code: 1006, reason: `cannot open the socket: ${error.message}` });
      throw new WsHubError("invalid_url", `wshub: cannot open ${url}: ${error.message}`);
    }
    this.#ws = ws;
    ws.onmessage = (event) => {
      if (this.#ws !== ws) return;
      // Any frame at all shows the socket still reaches the hub.
      this.#framesHeard += 1;
      this.#lastHeard = Date.now();
      this.#receive(ws, dial, event.data);
    };
    ws.onclose = (event) => {
      if (this.#ws === ws) this.#lost(event.code, event.reason);
    };
    ws.onerror = () => {
      // Browsers follow an error with a close event; some WebSocket implementations do not when
      // the connection could not be made, so a socket that never opened counts as lost here.
      if (this.#ws === ws && ws.readyState !== OPEN) {
        this.#lost(1006, "the connection could not be made");
      }
    };
  }

  #receive(ws, dial, data) {
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
    const requestId = typeof parsed.requestId === "string" && parsed.requestId !== ""
      ? parsed.requestId
      : null;

    if (requestId !== null && (envelope.action === "__reply" || envelope.action === "__error")) {
      const pending = this.#pending.get(requestId);
      if (pending !== undefined) {
        // The answer belongs to whoever asked; handlers would only see it as unsolicited.
        this.#untrack(requestId, pending);
        if (envelope.action === "__reply") {
          pending.resolve(parsed.message === undefined ? null : parsed.message);
        } else {
          const { code, detail } = errorInfo(envelope);
          pending.reject(
            new WsHubError(code, `wshub: request "${pending.action}" failed: ${code}: ${detail}`, detail),
          );
        }
        return;
      }
    }
    if (requestId !== null) envelope.requestId = requestId;

    if (envelope.action === "__connected") {
      const message = envelope.message !== null && typeof envelope.message === "object"
        ? envelope.message
        : {};
      this.#info = {
        connectionId: String(message.connectionId ?? ""),
        userId: String(message.userId ?? ""),
        groupId: String(message.groupId ?? ""),
      };
      if (this.#dialing === dial) {
        this.#dialing = null;
        this.#clearConnectTimer();
      }
      this.#attempt = 0;
      this.#flush(ws);
      this.#startHeartbeat(ws);
      this.#setState("open", { ...this.#info });
    } else if (envelope.action === "__error") {
      this.#reportError(errorInfo(envelope), envelope);
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

  /** The JSON text of an outgoing envelope, with this connection's identity by default. */
  #serialize(envelope, requestId) {
    const normalized = normalize(envelope);
    if (typeof envelope.groupId !== "string") {
      normalized.groupId = this.#info?.groupId ?? String(this.#groupId ?? "");
    }
    if (typeof envelope.userId !== "string") {
      normalized.userId = this.#info?.userId ?? String(this.#userId ?? "");
    }
    if (requestId !== null) normalized.requestId = requestId;
    try {
      return JSON.stringify(normalized);
    } catch (error) {
      throw new WsHubError("invalid_message", `wshub: the message is not JSON: ${error.message}`);
    }
  }

  #enqueue(item) {
    const ws = this.#ws;
    if (ws !== null && this.#state === "open" && ws.readyState === OPEN && this.#queue.length === 0) {
      this.#transmit(ws, item);
      return;
    }
    if (this.#queue.length >= this.#queueLimit) {
      throw new WsHubError(
        "queue_full",
        `wshub: not connected, and ${this.#queue.length} envelope(s) already wait to be sent ` +
          `(queueLimit ${this.#queueLimit})`,
      );
    }
    this.#queue.push(item);
    if (ws !== null && this.#state === "open") this.#flush(ws);
  }

  /** Sends what waits, in order, while the socket takes it. */
  #flush(ws) {
    while (this.#queue.length > 0 && ws.readyState === OPEN) {
      this.#transmit(ws, this.#queue[0]);
      this.#queue.shift();
    }
  }

  #transmit(ws, item) {
    ws.send(item.text);
    if (item.requestId !== null) {
      const pending = this.#pending.get(item.requestId);
      if (pending !== undefined) pending.sent = true;
    }
  }

  // ---- requests ----

  #nextRequestId() {
    this.#lastRequestId += 1;
    return String(this.#lastRequestId);
  }

  /** Waits for the answer to `requestId`; `item` is its queue entry (`null`: sent already). */
  #track(requestId, action, timeout, resolve, reject, item) {
    const pending = { action, resolve, reject, timer: null, sent: item === null, item };
    this.#pending.set(requestId, pending);
    if (timeout <= MAX_TIMER_MS) {
      pending.timer = setTimeout(() => {
        pending.timer = null;
        if (this.#pending.get(requestId) !== pending) return;
        this.#untrack(requestId, pending);
        reject(
          new WsHubError(
            "timeout",
            `wshub: no answer to request "${action}" within ${timeout} ms ` +
              (pending.sent
                ? "(it was sent: the hub may or may not have handled it)"
                : "(it was never sent, and now will not be)"),
          ),
        );
      }, timeout);
    }
    return pending;
  }

  /** Forgets a request: no timer, and out of the queue if it is still there. */
  #untrack(requestId, pending) {
    if (this.#pending.get(requestId) === pending) this.#pending.delete(requestId);
    if (pending.timer !== null) clearTimeout(pending.timer);
    pending.timer = null;
    if (!pending.sent && pending.item !== null) {
      const at = this.#queue.indexOf(pending.item);
      if (at !== -1) this.#queue.splice(at, 1);
    }
  }

  /** Rejects the requests that were sent (`onlySent`), or all of them, with `code`. */
  #failRequests(code, onlySent) {
    for (const [requestId, pending] of [...this.#pending]) {
      if (onlySent && !pending.sent) continue;
      const sent = pending.sent;
      this.#untrack(requestId, pending);
      const what = code === "closed" ? "the hub was closed" : "the socket was lost";
      pending.reject(
        new WsHubError(
          code,
          `wshub: ${what} before the answer to request "${pending.action}" came ` +
            (sent
              ? "(it was sent: the hub may or may not have handled it)"
              : "(it was never sent)"),
        ),
      );
    }
  }

  // ---- liveness ----

  #startHeartbeat(ws) {
    if (this.#heartbeat === null) return;
    this.#lastHeard = Date.now();
    this.#armHeartbeat(ws);
  }

  /** One timer for the whole interval, rather than one reset per frame received. */
  #armHeartbeat(ws) {
    if (this.#heartbeatTimer !== null) clearTimeout(this.#heartbeatTimer);
    const wait = Math.max(0, this.#lastHeard + this.#heartbeat.interval - Date.now());
    this.#heartbeatTimer = setTimeout(() => {
      this.#heartbeatTimer = null;
      if (this.#ws !== ws || this.#state !== "open") return;
      if (Date.now() - this.#lastHeard < this.#heartbeat.interval) this.#armHeartbeat(ws);
      else this.#ping(ws);
    }, wait);
  }

  /** Asks the hub for an `__ping` answer; none within the heartbeat's timeout, and nothing else
   *  heard meanwhile, means the socket is dead. */
  #ping(ws) {
    if (this.#pingId !== null || this.#heartbeat === null) return;
    if (this.#heartbeatTimer !== null) clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = null;
    const requestId = this.#nextRequestId();
    const heardBefore = this.#framesHeard;
    const { timeout } = this.#heartbeat;
    this.#pingId = requestId;
    const answered = () => {
      if (this.#pingId === requestId) this.#pingId = null;
      if (this.#ws === ws && this.#state === "open") this.#armHeartbeat(ws);
    };
    const failed = (error) => {
      if (this.#pingId === requestId) this.#pingId = null;
      // Lost already, for another reason, or closed.
      if (this.#ws !== ws || error.code === "disconnected" || error.code === "closed") return;
      // An error answer (rate_limited) came from the hub, and so did any other frame: alive.
      if (error.code === "timeout" && this.#framesHeard === heardBefore) {
        // Without waiting for the close event, which a dead network may deliver minutes later.
        this.#lost(DROPPED_BY_CLIENT, `no answer to __ping within ${timeout} ms`);
      } else {
        answered();
      }
    };
    this.#track(requestId, "__ping", timeout, answered, failed, null);
    try {
      ws.send(JSON.stringify({ action: "__ping", requestId }));
    } catch {
      // The socket is closing; its close event follows.
    }
  }

  #stopHeartbeat() {
    if (this.#heartbeatTimer !== null) clearTimeout(this.#heartbeatTimer);
    this.#heartbeatTimer = null;
    this.#pingId = null;
  }

  // ---- losing the socket ----

  /** Lets go of the socket and the attempt under way, if any. */
  #teardown() {
    const ws = this.#ws;
    this.#ws = null;
    this.#dialing = null;
    this.#info = null;
    this.#clearConnectTimer();
    this.#stopHeartbeat();
    return ws;
  }

  /** Tears down and closes the socket; requests sent on it can no longer be answered. */
  #drop(code, reason) {
    const ws = this.#teardown();
    if (ws !== null) {
      detach(ws);
      if (ws.readyState !== CLOSED) {
        try {
          ws.close(code, reason);
        } catch {
          // A reason too long in UTF-8 bytes: close without one.
          try {
            ws.close();
          } catch {
            // Closing already.
          }
        }
      }
    }
    this.#failRequests("disconnected", true);
  }

  /** The socket is gone (or never came, or beforeConnect failed): reconnect later, or stop. */
  #lost(code, reason, extra = {}) {
    this.#drop(DROPPED_BY_CLIENT, reason.slice(0, 120));
    if (code >= 4400 && code <= 4499) {
      this.#halt("stopped", { code, reason });
      return;
    }
    const reconnect = this.#reconnect;
    if (reconnect === null) {
      this.#halt("closed", { code, reason, ...extra });
      return;
    }
    const attempt = this.#attempt + 1;
    if (attempt > reconnect.maxAttempts) {
      this.#halt("closed", { code, reason, ...extra, attempts: attempt - 1 });
      return;
    }
    this.#attempt = attempt;
    const delay = backoff(reconnect, attempt);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#dialReporting();
    }, delay);
    this.#setState("reconnecting", { attempt, delay, code, reason, ...extra }, true);
  }

  /** An attempt no caller is there to catch for: what it throws is reported. */
  #dialReporting() {
    try {
      this.#dial();
    } catch (error) {
      callSafely(() => {
        throw error;
      });
    }
  }

  /** No more attempts until `connect()`: nothing queued is sent before, so requests give up. */
  #halt(state, info) {
    this.#clearRetry();
    this.#attempt = 0;
    this.#unlisten();
    this.#failRequests("disconnected", false);
    if (state === "stopped") {
      // Written in a session the hub has ended: the next connect() may be another user's, so
      // they are not sent then. What is sent while stopped waits for that connect().
      for (const item of this.#queue.splice(0)) {
        this.#reportError(
          { code: "stopped", detail: "the hub ended the session before this envelope could be sent" },
          normalize(JSON.parse(item.text)),
        );
      }
    }
    this.#setState(state, info);
  }

  #setState(state, info, always = false) {
    if (this.#state === state && !always) return;
    this.#state = state;
    for (const handler of [...this.#stateHandlers]) callSafely(handler, state, info);
  }

  #clearConnectTimer() {
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
  }

  #clearRetry() {
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  // ---- the browser's events ----

  /** `offline`, `online` and `visibilitychange`, where the environment has them (not Node). */
  #listen() {
    if (this.#listeners !== null) return;
    const target = this.#window;
    const listeners = { target, document: null, offline: null, online: null, visible: null };
    if (target !== null && typeof target?.addEventListener === "function") {
      listeners.offline = () => this.#wentOffline();
      listeners.online = () => this.#cameOnline();
      target.addEventListener("offline", listeners.offline);
      target.addEventListener("online", listeners.online);
    }
    const document = target?.document;
    if (document !== null && typeof document?.addEventListener === "function") {
      listeners.document = document;
      listeners.visible = () => {
        // Timers stood still while the machine slept: ask now rather than at the next interval.
        if (document.visibilityState === "visible" && this.#state === "open" && this.#ws !== null) {
          this.#ping(this.#ws);
        }
      };
      document.addEventListener("visibilitychange", listeners.visible);
    }
    this.#listeners = listeners;
  }

  #unlisten() {
    const listeners = this.#listeners;
    if (listeners === null) return;
    this.#listeners = null;
    if (listeners.offline !== null) {
      listeners.target.removeEventListener?.("offline", listeners.offline);
      listeners.target.removeEventListener?.("online", listeners.online);
    }
    if (listeners.visible !== null) {
      listeners.document.removeEventListener?.("visibilitychange", listeners.visible);
    }
  }

  /** No attempt can succeed without a network, and each failed one would lengthen the wait after
   *  it is back: drop the socket (it is dead or soon will be) and wait for `online`. */
  #wentOffline() {
    if (this.#reconnect === null) return;
    if (this.#ws === null && this.#dialing === null && this.#retryTimer === null) return;
    this.#clearRetry();
    this.#drop(DROPPED_BY_CLIENT, "the browser went offline");
    this.#setState("offline", { code: DROPPED_BY_CLIENT, reason: "the browser went offline" });
  }

  /** Back online: try at once, counting attempts from the first again. */
  #cameOnline() {
    if (this.#state === "offline") {
      this.#attempt = 0;
      this.#dialReporting();
    } else if (this.#retryTimer !== null) {
      this.connect();
    }
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
   * @param {object} [options] not in Web Connection: `{ url, WebSocket, reconnect, queueLimit,
   *   connectTimeout, heartbeat, beforeConnect, window }` for `WsHub` (the URL defaults to where
   *   this module was served from)
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
    const { url, WebSocket, queueLimit, connectTimeout, heartbeat, beforeConnect, window } =
      this.#options;
    const hub = new WsHub({
      url,
      WebSocket,
      queueLimit,
      connectTimeout,
      heartbeat,
      beforeConnect,
      window,
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
      } else if (
        state === "reconnecting" || state === "offline" || state === "stopped" || state === "closed"
      ) {
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
