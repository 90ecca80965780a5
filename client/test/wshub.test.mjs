// The WsHub client against the real examples/hyper_server on 127.0.0.1.
//
//   cargo build --example hyper_server && node --experimental-websocket --test client/test/

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";

import { to, WsHub, WsHubError } from "../wshub.js";
import {
  countingWebSocket,
  importServedCopy,
  Recorder,
  within,
  testBed,
} from "./support.mjs";

/** Backoff short enough for tests. */
const FAST = { minDelay: 20, maxDelay: 200, factor: 2, jitter: 0.5 };

const bed = testBed(WsHub, { reconnect: FAST });
const { makeHub, openHub } = bed;

function isWsHubError(code) {
  return (error) => {
    assert.ok(error instanceof WsHubError, `expected a WsHubError, got ${error}`);
    assert.ok(error instanceof Error);
    assert.equal(error.code, code);
    return true;
  };
}

/** For negative checks only ("nothing more happens"): never used to wait for something. */
function quietPeriod(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

test("connect: states connecting then open, and __connected's info", async () => {
  const hub = makeHub({ userId: "ann & bob/é", groupId: "room 1?" });
  const recorder = new Recorder(hub, "ann");
  const connected = [];
  hub.on("__connected", (message, envelope) => connected.push({ message, envelope }));

  assert.equal(hub.state, "idle");
  assert.equal(hub.connectionId, null);
  assert.equal(hub.info, null);
  assert.equal(hub.url, `${bed.server.ws}?groupId=room%201%3F&userId=ann%20%26%20bob%2F%C3%A9`);

  assert.equal(hub.connect(), hub, "connect() returns the hub");
  assert.equal(hub.state, "connecting");
  assert.equal(hub.connect(), hub, "a second connect() while connecting changes nothing");

  const { info } = await recorder.state("open");
  assert.match(info.connectionId, /^[0-9a-f]{32}$/);
  assert.deepEqual(info, {
    connectionId: info.connectionId,
    userId: "ann & bob/é",
    groupId: "room 1?",
  });
  assert.equal(hub.state, "open");
  assert.equal(hub.connectionId, info.connectionId);
  assert.deepEqual(hub.info, info);
  assert.deepEqual(
    recorder.states.map((s) => s.state),
    ["connecting", "open"],
  );
  assert.deepEqual(recorder.states[0].info, { url: hub.url });
  assert.equal(connected.length, 1);
  assert.deepEqual(connected[0].message, info);
  assert.equal(connected[0].envelope.action, "__connected");
});

test("a hub without identity connects with none", async () => {
  const { hub } = await openHub("anonymous");
  assert.equal(hub.url, bed.server.ws);
  assert.deepEqual(hub.info, { connectionId: hub.connectionId, userId: "", groupId: "" });
});

test("send/on: objects are sent as JSON values and arrive as objects; strings stay strings", async () => {
  const { hub: a } = await openHub("obj-a", { userId: "obj-a" });
  const { hub: b, recorder: rb } = await openHub("obj-b", { userId: "obj-b" });
  const toB = [to.user("obj-b")];

  const data = [];
  const unsubscribe = b.on("data", (message, envelope) => data.push({ message, envelope }));

  const object = { text: "hi", list: [1, "two", null, { deep: true }], nested: { empty: {} } };
  a.send("data", object, toB);
  a.send("text", '{"looks":"like JSON"}', toB);
  a.send("number", 42, toB);
  a.send("nothing", undefined, toB);
  await rb.envelope("nothing");

  assert.equal(data.length, 1);
  assert.deepEqual(data[0].message, object);
  assert.equal(typeof data[0].message, "object");
  assert.deepEqual(data[0].envelope, {
    action: "data",
    message: object,
    groupId: "",
    userId: "obj-a",
    recipients: [],
  });
  const text = await rb.envelope("text");
  assert.equal(text.message, '{"looks":"like JSON"}');
  assert.equal((await rb.envelope("number")).message, 42);
  assert.equal((await rb.envelope("nothing")).message, "", "a missing message is sent as \"\"");

  // From a backend, through the publish endpoint: the same.
  const published = { from: "backend", values: [1.5, false] };
  const answer = await bed.server.publish({
    action: "published",
    message: published,
    recipients: [{ type: "user", value: "obj-b" }],
  });
  assert.deepEqual(answer, { status: 200, body: { delivered: 1 } });
  assert.deepEqual((await rb.envelope("published")).message, published);

  // off / unsubscribe: the handler hears nothing more (the marker comes after, in order).
  unsubscribe();
  const other = () => assert.fail("an off() handler was called");
  b.on("data", other);
  b.off("data", other);
  a.send("data", { again: true }, toB);
  a.send("marker-1", "", toB);
  await rb.envelope("marker-1");
  assert.equal(data.length, 1, "an unsubscribed handler was called");
  assert.equal(rb.envelopes.filter((e) => e.action === "data").length, 2);
});

test("to: every recipient builder, routed by the hub as protocol §2 says", async () => {
  assert.deepEqual(to.all(), { type: "all", value: "" });
  assert.deepEqual(to.group("g"), { type: "group", value: "g" });
  assert.deepEqual(to.user(7), { type: "user", value: "7" }, "numbers are read as their text");
  assert.deepEqual(to.connection("c"), { type: "connection", value: "c" });
  assert.deepEqual(to.allButUser("u"), { type: "allButUser", value: "u" });
  assert.deepEqual(to.allButGroup("g"), { type: "allButGroup", value: "g" });
  assert.deepEqual(to.allButConnection("c"), { type: "allButConnection", value: "c" });
  assert.throws(() => to.group(null), isWsHubError("invalid_recipient"));
  assert.throws(() => to.user({}), isWsHubError("invalid_recipient"));

  // Its own server, so that "everyone" is exactly these five connections.
  const routing = await bed.start();
  const opened = {};
  for (const [name, userId, groupId] of [
    ["A", "rt-ann", "rt-g1"],
    ["B", "rt-bob", "rt-g1"],
    ["C", "rt-cy", "rt-g2"],
    ["D", "rt-ann", "rt-g2"], // ann's second tab
    ["S", "rt-sam", "rt-g3"], // the sender
  ]) {
    const hub = new WsHub({ url: routing.ws, userId, groupId, reconnect: false });
    bed.keep(hub);
    const recorder = new Recorder(hub, name);
    hub.connect();
    await recorder.state("open", "the connection to open");
    opened[name] = { hub, recorder };
  }
  const { A, B, S } = opened;
  const names = Object.keys(opened);

  const cases = [
    ["all", [to.all()], "ABCDS"],
    ["group", [to.group("rt-g1")], "AB"],
    ["user", [to.user("rt-ann")], "AD"],
    ["connection", [to.connection(B.hub.connectionId)], "B"],
    ["allButUser", [to.allButUser("rt-ann")], "BCS"],
    ["allButGroup", [to.allButGroup("rt-g1")], "CDS"],
    ["allButConnection", [to.allButConnection(A.hub.connectionId)], "BCDS"],
    ["group+allButUser", [to.group("rt-g1"), to.allButUser("rt-ann")], "B"],
    ["group+user (once each)", [to.group("rt-g1"), to.user("rt-ann")], "ABD"],
  ];
  for (const [label, recipients] of cases) S.hub.send(`route:${label}`, label, recipients);
  // Everyone gets the marker after the cases: a connection that has the marker and not a case
  // was not sent that case.
  S.hub.send("route:marker", "", [to.all()]);
  await Promise.all(names.map((n) => opened[n].recorder.envelope("route:marker")));

  for (const [label, recipients, expected] of cases) {
    const got = names
      .filter((n) => {
        const count = opened[n].recorder.envelopes.filter((e) => e.action === `route:${label}`)
          .length;
        assert.ok(count <= 1, `${n} received "${label}" ${count} times`);
        return count === 1;
      })
      .join("");
    assert.equal(got, expected, `${label} (${JSON.stringify(recipients)}) reached ${got}`);
  }
  // A receiver is not told whom else the sender addressed, nor whom it left out (protocol §1).
  const received = B.recorder.envelopes.find((e) => e.action === "route:group+allButUser");
  assert.deepEqual(received.recipients, []);
});

test("__error: onError and on('__error') get the hub's errors; the socket stays open", async () => {
  const { hub, recorder } = await openHub("erring", { userId: "erring" });
  const viaOn = [];
  hub.on("__error", (message, envelope) => viaOn.push({ message, envelope }));
  const seen = [];
  const unsubscribe = hub.onError((error, envelope) => seen.push({ error, envelope }));

  hub.send("__x", "reserved");
  const forbidden = await recorder.error((e) => e.error.code === "forbidden", "a forbidden error");
  assert.equal(typeof forbidden.error.detail, "string");
  assert.ok(forbidden.error.detail.length > 0);
  assert.equal(forbidden.envelope.action, "__error");
  assert.deepEqual(forbidden.envelope.message, forbidden.error);

  hub.send("x", "m", [{ type: "nonsense", value: "v" }]);
  await recorder.error((e) => e.error.code === "invalid_envelope", "an invalid_envelope error");

  assert.deepEqual(
    seen.map((s) => s.error.code),
    ["forbidden", "invalid_envelope"],
  );
  assert.deepEqual(
    viaOn.map((s) => s.message.code),
    ["forbidden", "invalid_envelope"],
  );

  unsubscribe();
  hub.send("__y", "again");
  hub.send("still-open", "", [to.user("erring")]);
  await recorder.envelope("still-open", "a message after the errors (the socket stayed open)");
  assert.equal(hub.state, "open");
  assert.equal(seen.length, 2, "an unsubscribed onError handler was called");
  assert.equal(recorder.errors.length, 3);
});

test("queue: envelopes sent before the connection opens are flushed in order", async () => {
  const hub = makeHub({ userId: "queue-self" });
  const recorder = new Recorder(hub, "queue-self");
  const self = [to.user("queue-self")];
  for (const n of [1, 2, 3]) hub.send("queued", n, self);
  assert.equal(hub.queued, 3);
  hub.connect();
  await recorder.envelope((e) => e.action === "queued" && e.message === 3, "the third queued");
  assert.deepEqual(
    recorder.envelopes.filter((e) => e.action === "queued").map((e) => e.message),
    [1, 2, 3],
  );
  assert.equal(hub.queued, 0);
  // Sent after open: straight through, after the queued ones.
  hub.send("queued", 4, self);
  await recorder.envelope((e) => e.action === "queued" && e.message === 4, "the one sent open");
});

test("queue_full: the bound throws a WsHubError; close() drops the queue and refuses more", async () => {
  const hub = makeHub({ queueLimit: 2, userId: "full" });
  const recorder = new Recorder(hub, "full");
  hub.send("one", 1);
  hub.send("two", 2);
  assert.throws(() => hub.send("three", 3), isWsHubError("queue_full"));
  assert.equal(hub.queued, 2);

  hub.close();
  assert.equal(hub.state, "closed");
  assert.deepEqual(
    recorder.errors.map((e) => [e.error.code, e.envelope.action]),
    [
      ["closed", "one"],
      ["closed", "two"],
    ],
  );
  assert.equal(hub.queued, 0);
  assert.deepEqual(
    recorder.states.map((s) => [s.state, s.info.dropped]),
    [["closed", 2]],
  );
  assert.throws(() => hub.send("four", 4), isWsHubError("closed"));
  assert.throws(() => hub.connect(), isWsHubError("closed"));
  hub.close(); // twice is fine
  assert.equal(recorder.states.length, 1);

  assert.throws(() => new WsHub({ url: bed.server.ws, queueLimit: -1 }), TypeError);
  const bad = makeHub();
  assert.throws(() => bad.send("cyclic", (() => { const o = {}; o.o = o; return o; })()),
    isWsHubError("invalid_message"));
  assert.throws(() => bad.send(7), TypeError);
});

test("reconnect: a dropped socket comes back with a new connection id; close() stops it", async () => {
  const { WebSocket, sockets } = countingWebSocket();
  const hub = makeHub({ WebSocket, userId: "dropper" });
  const recorder = new Recorder(hub, "dropper");
  hub.connect();
  const first = (await recorder.state("open")).info.connectionId;

  // The network drops it (as far as the client can tell).
  sockets[0].close();
  const reconnecting = await recorder.state("reconnecting");
  assert.equal(reconnecting.info.attempt, 1);
  assert.ok(reconnecting.info.delay <= FAST.minDelay, `first delay ${reconnecting.info.delay}`);
  const second = await recorder.state(
    (r) => r.state === "open" && r.info.connectionId !== first,
    "the connection to open again with a new id",
  );
  assert.equal(hub.connectionId, second.info.connectionId);
  assert.equal(sockets.length, 2);

  hub.close();
  assert.equal(hub.state, "closed");
  assert.equal(hub.connectionId, null);
  const states = recorder.states.length;
  await quietPeriod(10 * FAST.maxDelay);
  assert.equal(sockets.length, 2, "a socket was opened after close()");
  assert.equal(recorder.states.length, states, "a state changed after close()");
});

test("close() while waiting to reconnect: no attempt follows", async () => {
  // Nothing listens on port 1: every attempt fails at once.
  const { WebSocket, sockets } = countingWebSocket();
  const hub = new WsHub({ url: "ws://127.0.0.1:1/ws", WebSocket, reconnect: FAST });
  bed.keep(hub);
  const recorder = new Recorder(hub, "unreachable");
  hub.connect();
  await recorder.state(
    (r) => r.state === "reconnecting" && r.info.attempt === 3,
    "a third reconnect attempt",
  );
  const attempts = recorder.states.filter((r) => r.state === "reconnecting");
  assert.deepEqual(
    attempts.map((r) => r.info.attempt),
    [1, 2, 3],
  );
  for (const { info } of attempts) {
    const cap = Math.min(FAST.maxDelay, FAST.minDelay * FAST.factor ** (info.attempt - 1));
    assert.ok(
      info.delay >= cap * (1 - FAST.jitter) - 1 && info.delay <= cap,
      `attempt ${info.attempt} waits ${info.delay} ms, outside [${cap * (1 - FAST.jitter)}, ${cap}]`,
    );
  }
  assert.equal(hub.connectionId, null);
  hub.close();
  const made = sockets.length;
  await quietPeriod(10 * FAST.maxDelay);
  assert.equal(sockets.length, made, "an attempt was made after close()");
  assert.equal(recorder.states.at(-1).state, "closed");
});

test("reconnect: gives up after maxAttempts, then connect() starts again", async () => {
  const hub = new WsHub({
    url: "ws://127.0.0.1:1/ws",
    reconnect: { ...FAST, maxAttempts: 2 },
  });
  bed.keep(hub);
  const recorder = new Recorder(hub, "gives-up");
  hub.connect();
  const closed = await recorder.state("closed", "giving up");
  assert.equal(closed.info.attempts, 2);
  assert.deepEqual(
    recorder.states.map((r) => r.state),
    ["connecting", "reconnecting", "reconnecting", "closed"],
  );
  hub.connect();
  assert.equal(hub.state, "connecting");
  hub.close();
});

test("reconnect: resumes after the server restarts, with a new id, and flushes what was queued", async () => {
  const first = await bed.start();
  const backoff = { minDelay: 50, maxDelay: 400, factor: 2, jitter: 0.5 };
  const hub = new WsHub({ url: first.ws, userId: "phoenix", reconnect: backoff });
  bed.keep(hub);
  const recorder = new Recorder(hub, "phoenix");
  hub.connect();
  const before = (await recorder.state("open")).info.connectionId;

  await first.stop();
  const dropped = await recorder.state("reconnecting", "reconnecting after the server stopped");
  assert.equal(dropped.info.code, 1001, "a graceful shutdown closes with 1001 (going away)");
  await recorder.state(
    (r) => r.state === "reconnecting" && r.info.attempt === 3,
    "three attempts while the server is down",
  );
  const attempts = recorder.states.filter((r) => r.state === "reconnecting");
  for (const { info } of attempts) {
    const cap = Math.min(backoff.maxDelay, backoff.minDelay * backoff.factor ** (info.attempt - 1));
    assert.ok(
      info.delay >= cap * (1 - backoff.jitter) - 1 && info.delay <= cap,
      `attempt ${info.attempt} waits ${info.delay} ms, outside [${cap / 2}, ${cap}]`,
    );
  }
  assert.equal(hub.state, "reconnecting");
  assert.equal(hub.connectionId, null);

  // Sent while the server is down: queued, and flushed in order once it is back.
  for (const n of [1, 2, 3]) hub.send("while-down", n, [to.user("phoenix")]);
  assert.equal(hub.queued, 3);

  const second = await bed.start(first.addr); // the same port
  const reopened = await recorder.state(
    (r) => r.state === "open" && r.info.connectionId !== before,
    "the connection to the restarted server",
  );
  assert.match(reopened.info.connectionId, /^[0-9a-f]{32}$/);
  assert.notEqual(reopened.info.connectionId, before);
  assert.equal(hub.connectionId, reopened.info.connectionId);
  await recorder.envelope(
    (e) => e.action === "while-down" && e.message === 3,
    "the last envelope queued while the server was down",
  );
  assert.deepEqual(
    recorder.envelopes.filter((e) => e.action === "while-down").map((e) => e.message),
    [1, 2, 3],
  );
  assert.equal(hub.queued, 0);
  hub.close();
  await second.stop();
});

test("reconnect: false closes for the drop, without retrying", async () => {
  const own = await bed.start();
  const hub = new WsHub({ url: own.ws, reconnect: false });
  bed.keep(hub);
  const recorder = new Recorder(hub, "no-reconnect");
  hub.connect();
  await recorder.state("open");
  await own.stop();
  const closed = await recorder.state("closed", "closed after the server stopped");
  assert.equal(closed.info.code, 1001);
  assert.deepEqual(
    recorder.states.map((r) => r.state),
    ["connecting", "open", "closed"],
  );
});

test("the layer serves this very file at /ws/wshub.js, and its types beside it", async () => {
  const response = await within(fetch(`${bed.server.http}/ws/wshub.js`), "GET /ws/wshub.js");
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type"), /^text\/javascript/);
  assert.ok(response.headers.get("etag"));
  const served = await response.text();
  const local = await readFile(new URL("../wshub.js", import.meta.url), "utf8");
  assert.ok(
    served === local,
    "the served client differs from client/wshub.js: rebuild (cargo build --example hyper_server)",
  );
  const types = await within(fetch(`${bed.server.http}/ws/wshub.d.ts`), "GET /ws/wshub.d.ts");
  assert.equal(types.status, 200);
  assert.equal(
    await types.text(),
    await readFile(new URL("../wshub.d.ts", import.meta.url), "utf8"),
  );
});

describe("the socket URL", () => {
  test("defaults to where the module was served from", async () => {
    const served = await importServedCopy(`${bed.server.http}/ws/wshub.js`);
    const hub = new served.WsHub({ userId: "derived" });
    bed.keep(hub);
    assert.equal(hub.url, `${bed.server.ws}?userId=derived`);
    const recorder = new Recorder(hub, "derived");
    hub.connect();
    const { info } = await recorder.state("open");
    assert.equal(info.userId, "derived");

    const secure = await importServedCopy("https://example.com/app/ws/wshub.js?v=3#x");
    assert.equal(new secure.WsHub().url, "wss://example.com/app/ws");
    assert.equal(
      new secure.WsHub({ groupId: "g", userId: "u" }).url,
      "wss://example.com/app/ws?groupId=g&userId=u",
    );
  });

  test("is required when the module is not served over http(s)", () => {
    // This file imported ../wshub.js from a file: URL.
    assert.throws(() => new WsHub(), isWsHubError("no_url"));
  });

  test("http(s) URLs become ws(s); a query string is kept", () => {
    assert.equal(new WsHub({ url: "http://127.0.0.1:9/x" }).url, "ws://127.0.0.1:9/x");
    assert.equal(new WsHub({ url: "https://h.example/x" }).url, "wss://h.example/x");
    assert.equal(
      new WsHub({ url: "ws://h.example/ws?app=1", userId: "u" }).url,
      "ws://h.example/ws?app=1&userId=u",
    );
    assert.throws(() => new WsHub({ url: "ftp://h.example/ws" }), isWsHubError("invalid_url"));
    assert.throws(() => new WsHub({ url: "/relative" }), isWsHubError("invalid_url"));
  });
});
