// Shared by the client's tests: the real examples/hyper_server binary on 127.0.0.1, bounded
// waits that say what did not happen, and a recorder of what a hub receives.
//
// The binary is built by .ci/client-tests.sh (`cargo build --example hyper_server`); set
// WSHUB_HYPER_SERVER to use another path.

import { spawn } from "node:child_process";
import { after, before } from "node:test";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** The longest any single event may take before a test fails. */
export const WAIT_MS = 10_000;

export const TOKEN = "client-test-token-0123456789";

const BINARY =
  process.env.WSHUB_HYPER_SERVER ??
  fileURLToPath(new URL("../../target/debug/examples/hyper_server", import.meta.url));

// Servers still running. Should this process end without its after hooks (the runner stopped
// halfway, a signal), they end with it rather than living on.
const live = new Set();
function killLive() {
  for (const child of live) child.kill("SIGKILL");
}
process.once("exit", killLive);
for (const [signal, number] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]]) {
  process.once(signal, () => {
    killLive();
    process.exit(128 + number);
  });
}

/**
 * What most test files share, registered in the calling file: one hyper_server for its tests,
 * started before them, and every server and hub the file makes through it killed or closed
 * after them. `WsHub` is the class under test (the file's own import).
 *
 * - `bed.server`: the shared server (once `before` has run);
 * - `bed.start(addr)`: another server, killed after the file;
 * - `bed.keep(hub)`: closes a hub made by hand after the file, and returns it;
 * - `bed.makeHub(options)`: a WsHub on the shared server with `reconnect` as its backoff;
 * - `bed.openHub(name, options)`: one that is open, with its `Recorder`: `{ hub, recorder }`.
 */
export function testBed(WsHub, { reconnect }) {
  const hubs = [];
  const servers = [];
  const bed = {
    server: null,
    async start(addr) {
      const server = await startServer(addr);
      servers.push(server);
      return server;
    },
    keep(hub) {
      hubs.push(hub);
      return hub;
    },
    makeHub(options = {}) {
      return bed.keep(new WsHub({ url: bed.server.ws, reconnect, ...options }));
    },
    async openHub(name, options = {}) {
      const hub = bed.makeHub(options);
      const recorder = new Recorder(hub, name);
      hub.connect();
      await recorder.state("open", "the connection to open");
      return { hub, recorder };
    },
  };
  before(async () => {
    bed.server = await bed.start();
  });
  after(async () => {
    for (const hub of hubs) hub.close();
    await Promise.all(servers.map((server) => server.kill()));
  });
  return bed;
}

/** Resolves with `promise`'s value, or fails saying `what` did not happen within `ms`. */
export function within(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Starts examples/hyper_server on `addr` (a free port by default) and resolves once it prints
 * its address. `stop()` sends SIGTERM and waits for the exit; `kill()` is SIGKILL.
 */
export async function startServer(addr = "127.0.0.1:0") {
  if (!existsSync(BINARY)) {
    throw new Error(
      `${BINARY} is missing: build it with \`cargo build --example hyper_server\` ` +
        "(or run bash .ci/client-tests.sh), or set WSHUB_HYPER_SERVER",
    );
  }
  const child = spawn(BINARY, [], {
    env: { ...process.env, WSHUB_ADDR: addr, WSHUB_PUBLISH_TOKEN: TOKEN, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  live.add(child);
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  const listening = new Promise((resolve, reject) => {
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      const match = /^listening on http:\/\/(127\.0\.0\.1:[1-9][0-9]*)$/m.exec(stdout);
      if (match) resolve(match[1]);
    });
    child.once("error", (error) => reject(new Error(`cannot start ${BINARY}: ${error.message}`)));
    exited.then(({ code, signal }) =>
      reject(
        new Error(
          `hyper_server on ${addr} exited (code ${code}, signal ${signal}) before listening:\n${stderr}`,
        ),
      ),
    );
  });
  let address;
  try {
    address = await within(listening, `hyper_server to print "listening on" (asked for ${addr})`);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  let stopped = null;
  let paused = false;
  const server = {
    addr: address,
    http: `http://${address}`,
    ws: `ws://${address}/ws`,
    exited,
    /** SIGTERM (graceful: sockets get close 1001), then waits for the exit. */
    stop() {
      if (stopped === null) {
        // A stopped process keeps SIGTERM pending until it runs again.
        if (paused) server.resume();
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
        stopped = within(exited, `hyper_server on ${address} to exit after SIGTERM`).catch(
          (error) => {
            child.kill("SIGKILL");
            throw error;
          },
        );
      }
      return stopped;
    },
    /** SIGKILL, for after hooks: never throws. */
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      return exited;
    },
    /**
     * SIGSTOP: the process stands still while the kernel keeps its sockets, so a client's socket
     * stays up and unanswered, as with a hub behind a dead network path or a sleeping laptop.
     * Resolves once every thread has stopped: kill() returns before they have, and a thread still
     * running would answer what the test sends next.
     */
    async pause() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGSTOP");
      paused = true;
      await within(allStopped(child.pid), `hyper_server (pid ${child.pid}) to stop after SIGSTOP`);
    },
    /** SIGCONT, after `pause()`. */
    resume() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGCONT");
      paused = false;
    },
    /** POSTs `{ connection, code }` (or `{ user, code }`) to /api/disconnect, as a logout would;
     *  resolves with `{ status, body }`. */
    async disconnect(body, token = TOKEN) {
      const response = await within(
        fetch(`http://${address}/api/disconnect`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify(body),
        }),
        "/api/disconnect to answer",
      );
      return { status: response.status, body: await response.json() };
    },
    /** POSTs to the publish endpoint; resolves with `{ status, body }`. */
    async publish(envelope, token = TOKEN) {
      const response = await within(
        fetch(`http://${address}/api/publish`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify(envelope),
        }),
        "the publish endpoint to answer",
      );
      return { status: response.status, body: await response.json() };
    },
  };
  return server;
}

/** Resolves once every thread of `pid` is stopped (state `T` in /proc; Linux). There is no
 *  event to wait for, so it looks every millisecond; `within` bounds it. */
async function allStopped(pid) {
  const tasks = `/proc/${pid}/task`;
  if (!existsSync(tasks)) throw new Error(`${tasks} is missing: pause() needs Linux's /proc`);
  for (;;) {
    const states = await Promise.all(
      (await readdir(tasks)).map(async (tid) => {
        const stat = await readFile(`${tasks}/${tid}/stat`, "utf8").catch(() => ") T");
        // The state follows the command name, which is in parentheses and may hold spaces.
        return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      }),
    );
    if (states.every((state) => state === "T" || state === "t")) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/**
 * Everything a hub receives (envelopes, errors, states), with waits that resolve on the first
 * record matching a predicate, looking at what is already recorded first.
 */
export class Recorder {
  constructor(hub, name = "hub") {
    this.name = name;
    this.envelopes = [];
    this.errors = [];
    this.states = [];
    this.waiters = [];
    this.unsubscribe = [
      hub.on("*", (_message, envelope) => this.#record("envelopes", envelope)),
      hub.onError((error, envelope) => this.#record("errors", { error, envelope })),
      hub.onState((state, info) => this.#record("states", { state, info })),
    ];
  }

  #record(kind, value) {
    this[kind].push(value);
    for (const waiter of [...this.waiters]) {
      if (waiter.kind === kind && waiter.predicate(value)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(value);
      }
    }
  }

  #wait(kind, predicate, what) {
    const found = this[kind].find(predicate);
    if (found !== undefined) return Promise.resolve(found);
    const promise = new Promise((resolve) => this.waiters.push({ kind, predicate, resolve }));
    return within(promise, `${this.name}: ${what}`);
  }

  /** The first envelope matching `predicate` (an action name, or a function). */
  envelope(predicate, what) {
    const test = typeof predicate === "string" ? (e) => e.action === predicate : predicate;
    return this.#wait("envelopes", test, what ?? `an envelope ${String(predicate)}`);
  }

  error(predicate, what) {
    return this.#wait("errors", predicate, what ?? "an error");
  }

  /** The first state record matching: a state name, or a function of `{ state, info }`. */
  state(predicate, what) {
    const test = typeof predicate === "string" ? (r) => r.state === predicate : predicate;
    return this.#wait("states", test, what ?? `state ${String(predicate)}`);
  }

  /** Actions received, in order, without the hub's own. */
  actions() {
    return this.envelopes.filter((e) => !e.action.startsWith("__")).map((e) => e.action);
  }

  stop() {
    for (const unsubscribe of this.unsubscribe) unsubscribe();
  }
}

/** A WebSocket constructor that remembers every socket it made (to count attempts, or to drop
 *  a connection from the client's side as a network would). */
export function countingWebSocket() {
  const sockets = [];
  class CountingWebSocket extends globalThis.WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  return { WebSocket: CountingWebSocket, sockets };
}

/**
 * A WebSocket constructor that records each frame sent and received, parsed, as
 * `{ socket, envelope }` (`socket`: the index in `sockets`), in the inboxes `sent` and `received`.
 * A received frame is recorded once the client has handled it, so a test that waits for one sees
 * what the client made of it. One for which `wire.withhold(envelope)` is true is recorded (with
 * `withheld: true`) but never reaches the client: an answer still on its way, on a socket that is
 * otherwise real.
 */
export function recordingWebSocket(name = "wire") {
  const sockets = [];
  const wire = {
    sockets,
    sent: new Inbox(`${name}: frames sent`),
    received: new Inbox(`${name}: frames received`),
    withhold: () => false,
    WebSocket: null,
  };
  const parse = (data) => {
    try {
      return JSON.parse(data);
    } catch {
      return data;
    }
  };
  wire.WebSocket = class RecordingWebSocket extends globalThis.WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }

    send(data) {
      wire.sent.push({ socket: sockets.indexOf(this), envelope: parse(data) });
      super.send(data);
    }

    get onmessage() {
      return super.onmessage;
    }

    set onmessage(handler) {
      super.onmessage = typeof handler !== "function"
        ? handler
        : (event) => {
            const frame = { socket: sockets.indexOf(this), envelope: parse(event.data) };
            if (wire.withhold(frame.envelope)) {
              wire.received.push({ ...frame, withheld: true });
              return;
            }
            try {
              handler.call(this, event);
            } finally {
              wire.received.push(frame);
            }
          };
    }
  };
  return wire;
}

/**
 * Resolves with the WsHubError `promise` rejects with, after checking its `code`; fails if it
 * resolves, or does not settle in time. Call it as soon as the promise exists: a rejection that
 * comes while the test awaits something else must already have a handler.
 */
export async function rejection(promise, code, what) {
  let error;
  await within(
    promise.then(
      (value) => {
        throw new Error(`${what}: resolved with ${JSON.stringify(value)}, expected "${code}"`);
      },
      (e) => {
        error = e;
      },
    ),
    `${what} to reject`,
  );
  if (error?.name !== "WsHubError") throw new Error(`${what}: expected a WsHubError, got ${error}`);
  if (error.code !== code) throw new Error(`${what}: code ${error.code}, not ${code}: ${error.message}`);
  if (typeof error.detail !== "string") throw new Error(`${what}: no detail`);
  return error;
}

/** Resolves once `inbox` holds `n` items matching `predicate`. */
export function nth(inbox, predicate, n, what) {
  return inbox.wait(
    (item) => predicate(item) && inbox.items.filter(predicate).length >= n,
    `${n} × ${what}`,
  );
}

/** For negative checks only ("nothing more happens"): never used to wait for something. */
export function quietPeriod(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Lets every promise callback already due run (one macrotask turn): not a wait for time. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Values pushed by a callback (such as a Web Connection `on…Handler`), with the same waits. */
export class Inbox {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = [];
  }

  /** A function that records its first argument: assign it as a handler. */
  get handler() {
    return (value) => this.push(value);
  }

  push(value) {
    this.items.push(value);
    for (const waiter of [...this.waiters]) {
      if (waiter.predicate(value)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(value);
      }
    }
  }

  wait(predicate, what) {
    const found = this.items.find(predicate);
    if (found !== undefined) return Promise.resolve(found);
    const promise = new Promise((resolve) => this.waiters.push({ predicate, resolve }));
    return within(promise, `${this.name}: ${what}`);
  }
}

/**
 * Imports a copy of client/wshub.js that believes it was served from `moduleUrl` (its one use of
 * `import.meta.url` replaced), as a browser page would load it from the hub. Returns the module.
 */
export async function importServedCopy(moduleUrl) {
  const source = await readFile(new URL("../wshub.js", import.meta.url), "utf8");
  const uses = source.split("import.meta.url").length - 1;
  if (uses !== 1) {
    throw new Error(`client/wshub.js uses import.meta.url ${uses} times; the tests expect once`);
  }
  const dir = await mkdtemp(join(tmpdir(), "wshub-client-"));
  const file = join(dir, "wshub.js");
  await writeFile(file, source.replace("import.meta.url", JSON.stringify(moduleUrl)));
  try {
    return await import(pathToFileURL(file).href);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
