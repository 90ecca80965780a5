// hub.request(): requests and replies (protocol §4.1) against the real examples/hyper_server,
// which forwards the action "echo" to an in-process handler that answers `{ echo: message }`
// with a `__reply`, or refuses (403, so `__error` code `forbidden`) the message "refuse"; any
// other action is relayed and answered `null`.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { to, WsHub, WsHubError } from "../wshub.js";
import {
  recordingWebSocket,
  Recorder,
  rejection as rejectsWith,
  settle,
  within,
  testBed,
} from "./support.mjs";

const FAST = { minDelay: 20, maxDelay: 200, factor: 2, jitter: 0.5 };

const bed = testBed(WsHub, { reconnect: FAST });
const { makeHub, openHub } = bed;

test("request: a forwarded action resolves with the message of the application's __reply", async () => {
  const { hub, recorder } = await openHub("echoer");
  const object = { text: "hi", list: [1, "two", null], nested: { deep: true } };
  assert.deepEqual(await within(hub.request("echo", object), "the echo of an object"), {
    echo: object,
  });
  assert.deepEqual(await within(hub.request("echo", "a string"), "the echo of a string"), {
    echo: "a string",
  });
  assert.deepEqual(await within(hub.request("echo"), "the echo of no message"), { echo: "" });
  // The answers went to the promises alone.
  assert.deepEqual(
    recorder.envelopes.map((e) => e.action),
    ["__connected"],
  );
  assert.equal(recorder.errors.length, 0);
});

test("request: a refusal rejects with the hub's code and detail; only unsolicited errors reach onError", async () => {
  const { hub, recorder } = await openHub("refused", { userId: "refused" });
  const viaOn = [];
  hub.on("__error", (message) => viaOn.push(message.code));

  // An unsolicited error (no requestId) before and after the request, which goes to onError.
  hub.send("__before", "reserved");
  const refusal = hub.request("echo", "refuse");
  hub.send("__after", "reserved");

  const error = await rejectsWith(refusal, "forbidden", 'request("echo", "refuse")');
  assert.ok(error.detail.length > 0, "the hub's detail");
  assert.match(error.message, /echo/);
  assert.ok(error instanceof Error);

  await recorder.error(() => recorder.errors.length === 2, "the second unsolicited error");
  assert.deepEqual(
    recorder.errors.map((e) => e.error.code),
    ["forbidden", "forbidden"],
    "onError saw the two unsolicited errors and not the request's",
  );
  assert.equal(recorder.errors[0].envelope.requestId, undefined);
  assert.deepEqual(viaOn, ["forbidden", "forbidden"]);
  assert.equal(hub.state, "open");
});

test("request: a relayed action resolves with null; its recipients get the envelope without requestId", async () => {
  const { hub: ann } = await openHub("req-ann", { userId: "req-ann" });
  const wire = recordingWebSocket("req-bob");
  const { recorder: bob } = await openHub("req-bob", { userId: "req-bob", WebSocket: wire.WebSocket });

  const answer = await within(
    ann.request("chat", { text: "hello" }, { recipients: [to.user("req-bob")] }),
    "the answer to a relayed request",
  );
  assert.equal(answer, null);
  const received = await bob.envelope("chat");
  assert.deepEqual(received, {
    action: "chat",
    message: { text: "hello" },
    groupId: "",
    userId: "req-ann",
    recipients: [],
  });
  const frame = await wire.received.wait((f) => f.envelope.action === "chat", "the chat frame");
  assert.ok(!("requestId" in frame.envelope), "a recipient saw the sender's requestId");

  // The default recipients: the default group, which req-bob is in.
  assert.equal(await within(ann.request("chat2", "x"), "a request to the default group"), null);
  await bob.envelope("chat2");
});

test("request ids: strings, unique per hub, carried by the envelope sent; __ping answers null", async () => {
  const wire = recordingWebSocket("ids");
  const { hub } = await openHub("ids", { WebSocket: wire.WebSocket, userId: "ids" });
  const answers = await within(
    Promise.all([
      hub.request("echo", 1),
      hub.request("echo", 2),
      hub.request("relayed", 3, { recipients: [to.user("nobody")] }),
      hub.request("__ping"),
    ]),
    "four concurrent requests",
  );
  assert.deepEqual(answers, [{ echo: 1 }, { echo: 2 }, null, null]);
  const sent = wire.sent.items.map((f) => f.envelope);
  const ids = sent.map((e) => e.requestId);
  for (const id of ids) assert.equal(typeof id, "string");
  assert.equal(new Set(ids).size, 4, `ids ${ids} are not unique`);
  assert.deepEqual(sent[0], {
    action: "echo",
    message: 1,
    groupId: "",
    userId: "ids",
    recipients: [],
    requestId: ids[0],
  });
  // Each answer carried its own id back.
  for (const id of ids) {
    await wire.received.wait((f) => f.envelope.requestId === id, `the answer to request ${id}`);
  }
});

test("request while not open: queued like send, sent once open, and answered", async () => {
  const hub = makeHub();
  const recorder = new Recorder(hub, "early");
  const early = hub.request("echo", "early");
  assert.equal(hub.queued, 1);
  hub.connect();
  assert.deepEqual(await within(early, "the answer to a request made before connect()"), {
    echo: "early",
  });
  assert.equal(hub.queued, 0);
  assert.equal(recorder.errors.length, 0);
});

test("request timeout: runs from the call; a request still queued leaves the queue", async () => {
  // Nothing listens on port 1: the request is never sent.
  const hub = new WsHub({ url: "ws://127.0.0.1:1/ws", reconnect: FAST });
  bed.keep(hub);
  const recorder = new Recorder(hub, "timeout-queued");
  hub.send("plain", "stays queued");
  const started = Date.now();
  const timedOut = rejectsWith(hub.request("echo", "x", { timeout: 100 }), "timeout", "a queued request");
  hub.connect();
  assert.equal(hub.queued, 2);
  const error = await timedOut;
  assert.ok(Date.now() - started >= 95, `rejected after ${Date.now() - started} ms`);
  assert.match(error.message, /never sent/);
  assert.equal(hub.queued, 1, "the timed-out request is still queued");
  hub.close();
  assert.deepEqual(
    recorder.errors.map((e) => [e.error.code, e.envelope.action]),
    [["closed", "plain"]],
  );
});

test("request timeout on an open socket whose hub stalls; the late answer goes to on('__reply')", async () => {
  const own = await bed.start();
  const wire = recordingWebSocket("stalled");
  const hub = new WsHub({ url: own.ws, WebSocket: wire.WebSocket, heartbeat: false });
  bed.keep(hub);
  const recorder = new Recorder(hub, "stalled");
  hub.connect();
  await recorder.state("open");

  await own.pause();
  const error = await rejectsWith(hub.request("echo", "late", { timeout: 200 }), "timeout", "a stalled request");
  assert.match(error.message, /was sent/);
  const { requestId } = wire.sent.items.at(-1).envelope;
  own.resume();

  // Answered after all: nobody waits for it any more, so handlers see it, with its id.
  const late = await recorder.envelope("__reply", "the late __reply");
  assert.equal(late.requestId, requestId);
  assert.deepEqual(late.message, { echo: "late" });
  assert.equal(hub.state, "open");
  assert.equal(recorder.errors.length, 0);
});

test("request: 'disconnected' when the socket is lost before the answer", async () => {
  const own = await bed.start();
  const hub = new WsHub({ url: own.ws, reconnect: FAST, heartbeat: false });
  bed.keep(hub);
  const recorder = new Recorder(hub, "lost");
  hub.connect();
  await recorder.state("open");

  // The hub stands still with the request unread, then dies: the kernel closes its sockets.
  await own.pause();
  const rejected = rejectsWith(
    hub.request("echo", "never answered"),
    "disconnected",
    "a request on a lost socket",
  );
  await own.kill();
  const error = await rejected;
  assert.match(error.message, /may or may not/);
  await recorder.state("reconnecting");
});

test("close() rejects waiting requests with 'closed', sent or queued, and reports only plain sends", async () => {
  const wire = recordingWebSocket("closing");
  const { hub, recorder } = await openHub("closing", { WebSocket: wire.WebSocket });
  // The answer is on its way, but not here yet.
  wire.withhold = (envelope) => envelope.action === "__reply";
  const sent = rejectsWith(hub.request("echo", "sent"), "closed", "a sent request at close()");
  await wire.received.wait((f) => f.envelope.action === "__reply", "the withheld answer");
  hub.close();
  await sent;
  assert.equal(recorder.errors.length, 0);

  const queuedHub = makeHub();
  const queuedRecorder = new Recorder(queuedHub, "closing-queued");
  const queued = rejectsWith(queuedHub.request("echo", "queued"), "closed", "a queued request");
  queuedHub.send("plain", "queued too");
  queuedHub.close();
  await queued;
  assert.deepEqual(
    queuedRecorder.errors.map((e) => [e.error.code, e.envelope.action]),
    [["closed", "plain"]],
  );
  assert.equal(queuedRecorder.states.at(-1).info.dropped, 2);
  await rejectsWith(queuedHub.request("echo"), "closed", "a request after close()");
});

test("request never throws: bad arguments, a full queue and unserialisable messages reject", async () => {
  const hub = makeHub({ queueLimit: 1 });
  const rejected = async (promise, type) => {
    assert.ok(promise instanceof Promise);
    await assert.rejects(promise, type);
  };
  await rejected(hub.request(7), TypeError);
  await rejected(hub.request("a", "", { timeout: 0 }), TypeError);
  await rejected(hub.request("a", "", { timeout: "1" }), TypeError);
  await rejected(hub.request("a", "", { recipients: "all" }), TypeError);
  await rejected(hub.request("a", "", null), TypeError);
  const cyclic = {};
  cyclic.self = cyclic;
  await rejectsWith(hub.request("a", cyclic), "invalid_message", "a cyclic message");

  const first = rejectsWith(
    hub.request("a", "fills the queue", { timeout: Infinity }),
    "closed",
    "the queued request at close()",
  );
  await rejectsWith(hub.request("b"), "queue_full", "a request past queueLimit");
  assert.equal(hub.queued, 1);
  hub.close();
  await first;
  await settle();
});
