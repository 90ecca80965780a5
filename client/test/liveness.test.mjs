// Liveness against the real examples/hyper_server: the heartbeat (`__ping` when the hub has been
// silent, protocol §4.1), the ping on becoming visible, and the browser's offline/online events.
// A hub that "stalls" is the real process under SIGSTOP: its sockets stay up and unanswered, as
// behind a dead network path or after a laptop's sleep. The browser's events are dispatched on an
// EventTarget passed as the `window` option.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { to, WsHub } from "../wshub.js";
import {
  nth,
  quietPeriod,
  recordingWebSocket,
  Recorder,
  rejection,
  testBed,
} from "./support.mjs";

const FAST = { minDelay: 20, maxDelay: 200, factor: 2, jitter: 0.5 };

const bed = testBed(WsHub, { reconnect: FAST });
const { makeHub } = bed;

/** What a browser's window is to the client: `online`/`offline`, and a document that says
 *  whether the page is visible. */
function fakeWindow() {
  const window = new EventTarget();
  window.document = new EventTarget();
  window.document.visibilityState = "visible";
  window.fire = (type) => window.dispatchEvent(new Event(type));
  window.show = (state) => {
    window.document.visibilityState = state;
    window.document.dispatchEvent(new Event("visibilitychange"));
  };
  return window;
}

const isPing = (f) => f.envelope.action === "__ping";

test("heartbeat: a silent open socket is pinged, each __ping answered, and it stays open", async () => {
  const wire = recordingWebSocket("pinged");
  const hub = makeHub({ WebSocket: wire.WebSocket, heartbeat: { interval: 100, timeout: 2000 } });
  const recorder = new Recorder(hub, "pinged");
  hub.connect();
  await recorder.state("open");

  await nth(wire.sent, isPing, 3, "an __ping sent");
  const pings = wire.sent.items.filter(isPing);
  for (const { envelope } of pings) {
    assert.deepEqual(Object.keys(envelope).sort(), ["action", "requestId"]);
    await wire.received.wait(
      (f) => f.envelope.action === "__reply" && f.envelope.requestId === envelope.requestId,
      `the __reply to __ping ${envelope.requestId}`,
    );
  }
  assert.deepEqual(
    recorder.states.map((r) => r.state),
    ["connecting", "open"],
  );
  assert.equal(wire.sockets.length, 1);
  // The answers settle the pings: no handler hears them.
  assert.deepEqual(
    recorder.envelopes.map((e) => e.action),
    ["__connected"],
  );
  assert.equal(recorder.errors.length, 0);
});

test("heartbeat: any frame from the hub counts; no __ping while traffic flows", async () => {
  const wire = recordingWebSocket("busy");
  const interval = 600;
  const hub = makeHub({
    WebSocket: wire.WebSocket,
    userId: "busy",
    heartbeat: { interval, timeout: 2000 },
  });
  const recorder = new Recorder(hub, "busy");
  hub.connect();
  await recorder.state("open");

  // Three intervals' worth of messages to itself, one every 100 ms: the hub is never silent for
  // more than a sixth of the interval, so a ping here would mean traffic was not counted.
  for (let n = 1; n <= 18; n += 1) {
    hub.send("tick", n, [to.user("busy")]);
    await recorder.envelope((e) => e.action === "tick" && e.message === n, `tick ${n}`);
    await quietPeriod(100);
  }
  assert.equal(wire.sent.items.filter(isPing).length, 0, "pinged while frames kept arriving");
  // Silent from here on: the heartbeat is still armed.
  await wire.sent.wait(isPing, "an __ping once the traffic stopped");
});

test("heartbeat: a stalled hub is found by an unanswered __ping; the socket is dropped at once and comes back", async () => {
  const own = await bed.start();
  const wire = recordingWebSocket("stalled");
  const heartbeat = { interval: 200, timeout: 300 };
  const hub = new WsHub({ url: own.ws, WebSocket: wire.WebSocket, reconnect: FAST, heartbeat });
  bed.keep(hub);
  const recorder = new Recorder(hub, "stalled");
  hub.connect();
  const first = (await recorder.state("open")).info.connectionId;

  // A request in flight when the socket is found dead.
  await own.pause();
  const pending = rejection(
    hub.request("echo", "into the void", { timeout: 60000 }),
    "disconnected",
    "the request on the dead socket",
  );
  const paused = Date.now();
  const dropped = await recorder.state("reconnecting", "the dead socket to be dropped");
  // The hub, stopped, sent no close frame, and the kernel keeps its TCP connection up: only the
  // unanswered __ping can have ended this socket.
  assert.equal(dropped.info.code, 4000);
  assert.match(dropped.info.reason, /no answer to __ping within 300 ms/);
  const took = Date.now() - paused;
  assert.ok(took < heartbeat.interval + heartbeat.timeout + 2000, `dropped after ${took} ms`);
  await pending;

  own.resume();
  const back = await recorder.state(
    (r) => r.state === "open" && r.info.connectionId !== first,
    "the connection back once the hub runs again",
  );
  assert.notEqual(back.info.connectionId, first);
});

test("becoming visible pings at once (and becoming hidden does not); a dead socket is then dropped", async () => {
  const own = await bed.start();
  const window = fakeWindow();
  const wire = recordingWebSocket("visible");
  // An interval no test waits for: only the visibility change can ping here.
  const heartbeat = { interval: 60000, timeout: 300 };
  const hub = new WsHub({ url: own.ws, WebSocket: wire.WebSocket, reconnect: FAST, heartbeat, window });
  bed.keep(hub);
  const recorder = new Recorder(hub, "visible");
  hub.connect();
  await recorder.state("open");

  window.show("hidden");
  assert.equal(wire.sent.items.filter(isPing).length, 0, "pinged on becoming hidden");
  window.show("visible");
  const ping = wire.sent.items.find(isPing);
  assert.ok(ping, "no __ping sent at once on becoming visible");
  await wire.received.wait(
    (f) => f.envelope.action === "__reply" && f.envelope.requestId === ping.envelope.requestId,
    "the __reply to the ping",
  );
  assert.equal(hub.state, "open");

  // After a "sleep": the hub does not answer any more.
  await own.pause();
  window.show("visible");
  const dropped = await recorder.state("reconnecting", "the dead socket to be dropped");
  assert.match(dropped.info.reason, /__ping/);
  own.resume();
  await recorder.state((r) => r.state === "open" && r !== recorder.states[1], "open again");
});

test("heartbeat: false sends no __ping, even on becoming visible", async () => {
  const window = fakeWindow();
  const wire = recordingWebSocket("no-heartbeat");
  const hub = makeHub({ WebSocket: wire.WebSocket, heartbeat: false, window, userId: "quiet" });
  const recorder = new Recorder(hub, "no-heartbeat");
  hub.connect();
  await recorder.state("open");
  window.show("visible");
  hub.send("marker", "", [to.user("quiet")]);
  await recorder.envelope("marker");
  assert.equal(wire.sent.items.filter(isPing).length, 0);
  assert.throws(() => makeHub({ heartbeat: { interval: 0 } }), TypeError);
  assert.throws(() => makeHub({ heartbeat: "often" }), TypeError);
});

test("offline: the socket is dropped, state 'offline', no attempts; online reconnects at once and flushes", async () => {
  const window = fakeWindow();
  const wire = recordingWebSocket("offline");
  const hub = makeHub({
    WebSocket: wire.WebSocket,
    window,
    userId: "offline",
    reconnect: { minDelay: 20, maxDelay: 20, factor: 1, jitter: 0 },
  });
  const recorder = new Recorder(hub, "offline");
  hub.connect();
  const first = (await recorder.state("open")).info.connectionId;

  // A request whose answer is still on its way when the network goes.
  wire.withhold = (envelope) => envelope.action === "__reply";
  const pending = rejection(hub.request("echo", "in flight"), "disconnected", "the request in flight");
  await wire.received.wait((f) => f.envelope.action === "__reply", "the withheld answer");
  wire.withhold = () => false;

  window.fire("offline");
  assert.equal(hub.state, "offline", "offline at once, without waiting for the close event");
  assert.deepEqual(recorder.states.at(-1).info, { code: 4000, reason: "the browser went offline" });
  assert.notEqual(wire.sockets[0].readyState, WebSocket.OPEN, "the socket was not closed");
  await pending;

  // Sent while offline: queued.
  hub.send("while-offline", 1, [to.user("offline")]);
  assert.equal(hub.queued, 1);
  // With attempts every 20 ms, ten would have been made in this time; none may be.
  await quietPeriod(200);
  assert.equal(wire.sockets.length, 1, "an attempt was made while offline");
  assert.equal(hub.state, "offline");

  window.fire("online");
  assert.equal(hub.state, "connecting", "no backoff wait once online");
  const back = await recorder.state(
    (r) => r.state === "open" && r.info.connectionId !== first,
    "open again once online",
  );
  assert.ok(back);
  await recorder.envelope("while-offline", "what was sent while offline");
  assert.deepEqual(
    recorder.states.map((r) => r.state),
    ["connecting", "open", "offline", "connecting", "open"],
  );
});

test("offline while waiting to reconnect: the wait ends, and attempts count from 1 again once online", async () => {
  const window = fakeWindow();
  const wire = recordingWebSocket("offline-retrying");
  // Nothing listens on port 1: every attempt fails.
  const hub = new WsHub({
    url: "ws://127.0.0.1:1/ws",
    WebSocket: wire.WebSocket,
    window,
    reconnect: { minDelay: 20, maxDelay: 20, factor: 1, jitter: 0, maxAttempts: 3 },
  });
  bed.keep(hub);
  const recorder = new Recorder(hub, "offline-retrying");
  hub.connect();
  await recorder.state((r) => r.state === "reconnecting" && r.info.attempt === 2, "attempt 2");
  window.fire("offline");
  assert.equal(hub.state, "offline");
  const made = wire.sockets.length;
  // Attempts 3 and the give-up would have come in this time.
  await quietPeriod(200);
  assert.equal(wire.sockets.length, made, "an attempt was made while offline");

  window.fire("online");
  const next = await recorder.state(
    (r) => r.state === "reconnecting" && recorder.states.indexOf(r) > recorder.states.findIndex((s) => s.state === "offline"),
    "the first failure once online",
  );
  assert.equal(next.info.attempt, 1, "attempts spent before going offline still counted");
  hub.close();
});

test("without the browser's events (Node's globalThis), nothing listens and nothing breaks", async () => {
  assert.equal(typeof globalThis.addEventListener, "undefined");
  assert.equal(typeof globalThis.document, "undefined");
  const hub = makeHub();
  const recorder = new Recorder(hub, "node");
  hub.connect();
  await recorder.state("open");
  hub.close();
});
