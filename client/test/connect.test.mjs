// Connecting and coming back, against the real examples/hyper_server: the close codes that stop
// the client (4400-4499, protocol §6) and those that do not, and the beforeConnect hook.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { WebConnectionWebSocket, WsHub } from "../wshub.js";
import {
  countingWebSocket,
  Inbox,
  quietPeriod,
  recordingWebSocket,
  Recorder,
  rejection,
  settle,
  within,
  testBed,
} from "./support.mjs";

// No jitter, and short: a reconnect, were one scheduled, would be attempted within 20 ms.
const PROMPT = { minDelay: 20, maxDelay: 20, factor: 1, jitter: 0 };
// How long "no reconnect follows" is watched: ten times the longest wait PROMPT allows. The
// client decides synchronously, in the close event, between "stopped" and "reconnecting"; this
// only guards against a stray timer.
const WATCH_MS = 200;

const bed = testBed(WsHub, { reconnect: PROMPT });
const { makeHub, openHub } = bed;

async function disconnect(connection, code) {
  const answer = await bed.server.disconnect({ connection, code });
  assert.deepEqual(answer, { status: 200, body: { closed: 1 } }, `/api/disconnect with ${code}`);
}

describe("close codes 4400-4499 stop the client", () => {
  test("4401: state 'stopped' with { code, reason }, no reconnect, requests reject; connect() starts again", async () => {
    const wire = recordingWebSocket("logged-out");
    const { hub, recorder } = await openHub("logged-out", { WebSocket: wire.WebSocket });
    const first = hub.connectionId;

    // A request whose answer is still on its way when the logout closes the socket.
    wire.withhold = (envelope) => envelope.action === "__reply";
    const pending = rejection(hub.request("echo", "in flight"), "disconnected", "the request in flight");
    await wire.received.wait((f) => f.envelope.action === "__reply", "the withheld answer");
    wire.withhold = () => false;

    await disconnect(first, 4401);
    const stopped = await recorder.state("stopped", "the stopped state");
    assert.equal(stopped.info.code, 4401);
    assert.equal(typeof stopped.info.reason, "string");
    assert.equal(hub.state, "stopped");
    assert.equal(hub.connectionId, null);
    await pending;

    await quietPeriod(WATCH_MS);
    assert.equal(wire.sockets.length, 1, "a socket was opened after the 4401");
    assert.deepEqual(
      recorder.states.map((r) => r.state),
      ["connecting", "open", "stopped"],
    );

    // Sent while stopped: queued, like any send while not open, and sent after connect().
    const later = hub.request("echo", "after login");
    assert.equal(hub.queued, 1);
    hub.connect();
    assert.equal(hub.state, "connecting");
    const again = await recorder.state(
      (r) => r.state === "open" && r.info.connectionId !== first,
      "the connection to open again after connect()",
    );
    assert.match(again.info.connectionId, /^[0-9a-f]{32}$/);
    assert.deepEqual(await within(later, "the answer to the request queued while stopped"), {
      echo: "after login",
    });
  });

  test("4403 and 4499 stop too; 4399 and 4500 reconnect", async () => {
    for (const code of [4403, 4499]) {
      const { hub, recorder } = await openHub(`stop-${code}`);
      await disconnect(hub.connectionId, code);
      const stopped = await recorder.state("stopped", `the stopped state after ${code}`);
      assert.equal(stopped.info.code, code);
    }
    for (const code of [4399, 4500]) {
      const { hub, recorder } = await openHub(`go-on-${code}`);
      const first = hub.connectionId;
      await disconnect(first, code);
      const reconnecting = await recorder.state("reconnecting", `reconnecting after ${code}`);
      assert.equal(reconnecting.info.code, code);
      await recorder.state((r) => r.state === "open" && r.info.connectionId !== first, "open again");
    }
  });

  test("the Web Connection layer calls onCloseHandler for a stop, and does not come back", async () => {
    const socket = new WebConnectionWebSocket({ url: bed.server.ws, reconnect: PROMPT });
    const opens = new Inbox("onOpenHandler");
    const closes = new Inbox("onCloseHandler");
    socket.onOpenHandler = opens.handler;
    socket.onCloseHandler = closes.handler;
    try {
      socket.tryConnect(true, "", "wc-stopped");
      const opened = await opens.wait(() => true, "the socket to open");
      await disconnect(opened.connectionId, 4401);
      const closed = await closes.wait(() => true, "onCloseHandler after the 4401");
      assert.equal(closed.code, 4401);
      assert.equal(socket.hub.state, "stopped");
    } finally {
      socket.close();
    }
  });
});

test("a 1000 or 1001 close from the application still reconnects, with backoff", async () => {
  for (const code of [1000, 1001]) {
    const { WebSocket, sockets } = countingWebSocket();
    const { hub, recorder } = await openHub(`normal-${code}`, { WebSocket });
    const first = hub.connectionId;
    await disconnect(first, code);
    const reconnecting = await recorder.state("reconnecting", `reconnecting after ${code}`);
    assert.equal(reconnecting.info.code, code);
    assert.equal(reconnecting.info.attempt, 1);
    await recorder.state(
      (r) => r.state === "open" && r.info.connectionId !== first,
      `open again after ${code}`,
    );
    assert.equal(sockets.length, 2);
  }
});

describe("beforeConnect", () => {
  test("runs before each attempt with { attempt, url }; its query is that attempt's", async () => {
    const calls = [];
    const hub = makeHub({
      groupId: "hook-group",
      beforeConnect: async (context) => {
        calls.push(context);
        // A fresh token per attempt, as a page that refreshes one would; groupId: null removes
        // the option's.
        return { query: { userId: `hook ${calls.length} & é`, groupId: null, token: "t" } };
      },
    });
    assert.equal(hub.url, `${bed.server.ws}?groupId=hook-group`);
    const recorder = new Recorder(hub, "hooked");
    hub.connect();
    assert.equal(hub.state, "connecting", "connecting while the hook runs");
    const first = await recorder.state("open");
    assert.deepEqual(first.info, {
      connectionId: first.info.connectionId,
      userId: "hook 1 & é",
      groupId: "",
    });

    await disconnect(first.info.connectionId, 1000);
    const second = await recorder.state(
      (r) => r.state === "open" && r.info.connectionId !== first.info.connectionId,
      "open again",
    );
    assert.equal(second.info.userId, "hook 2 & é");
    assert.deepEqual(calls, [
      { attempt: 0, url: hub.url },
      { attempt: 1, url: hub.url },
    ]);
    assert.equal(hub.url, `${bed.server.ws}?groupId=hook-group`, "hub.url is the configured one");
  });

  test("its url replaces the url option for that attempt; userId and groupId still apply", async () => {
    const hub = makeHub({
      url: "ws://127.0.0.1:1/ws", // nothing listens there
      userId: "moved",
      beforeConnect: () => ({ url: bed.server.http + "/ws" }),
    });
    const recorder = new Recorder(hub, "moved");
    hub.connect();
    const { info } = await recorder.state("open", "open on the hook's URL");
    assert.equal(info.userId, "moved");
    assert.equal(recorder.states.filter((r) => r.state === "reconnecting").length, 0);
  });

  test("a throw fails that attempt, is reported in the 'reconnecting' info, and backoff goes on", async () => {
    const { WebSocket, sockets } = countingWebSocket();
    let calls = 0;
    const hub = makeHub({
      WebSocket,
      beforeConnect: async () => {
        calls += 1;
        if (calls === 1) throw new Error("token service down");
      },
    });
    const recorder = new Recorder(hub, "hook-throws");
    hub.connect();
    const failed = await recorder.state("reconnecting", "reconnecting after the hook threw");
    assert.equal(failed.info.attempt, 1);
    assert.equal(failed.info.code, 0, "no socket was closed: code 0");
    assert.match(failed.info.reason, /beforeConnect failed: token service down/);
    assert.ok(failed.info.error instanceof Error);
    assert.equal(sockets.length, 0, "no socket for the failed attempt");
    await recorder.state("open", "open on the next attempt");
    assert.equal(calls, 2);
  });

  test("one that never settles is cut off by connectTimeout; an invalid answer fails the attempt", async () => {
    let calls = 0;
    const hub = makeHub({
      connectTimeout: 150,
      beforeConnect: () => {
        calls += 1;
        if (calls === 1) return new Promise(() => {});
        if (calls === 2) return "not an object";
        return undefined;
      },
    });
    const recorder = new Recorder(hub, "hook-hangs");
    hub.connect();
    const hung = await recorder.state("reconnecting", "reconnecting after the hook hung");
    assert.equal(hung.info.code, 4000);
    assert.match(hung.info.reason, /beforeConnect did not finish within the connect timeout/);
    const invalid = await recorder.state(
      (r) => r.state === "reconnecting" && r.info.attempt === 2,
      "reconnecting after the hook's invalid answer",
    );
    assert.match(invalid.info.reason, /beforeConnect failed/);
    assert.ok(invalid.info.error instanceof TypeError);
    await recorder.state("open", "open on the third attempt");
  });

  test("returning false stops (no attempt); connect() calls it again from attempt 0", async () => {
    const { WebSocket, sockets } = countingWebSocket();
    const calls = [];
    let loggedIn = false;
    const hub = makeHub({
      WebSocket,
      beforeConnect: ({ attempt }) => {
        calls.push(attempt);
        return loggedIn ? { query: { token: "fresh" } } : false;
      },
    });
    const recorder = new Recorder(hub, "not-logged-in");
    hub.connect();
    const stopped = await recorder.state("stopped", "stopped by the hook");
    assert.equal(stopped.info.code, 0);
    assert.match(stopped.info.reason, /beforeConnect returned false/);
    assert.equal(sockets.length, 0);

    loggedIn = true;
    hub.connect();
    await recorder.state("open", "open after connect()");
    assert.deepEqual(calls, [0, 0]);
  });

  test("close() while it runs: its answer is ignored and no socket is made", async () => {
    const { WebSocket, sockets } = countingWebSocket();
    let answer;
    const called = new Promise((resolveCalled) => {
      const hub = makeHub({
        WebSocket,
        beforeConnect: () =>
          new Promise((resolve) => {
            answer = resolve;
            resolveCalled(hub);
          }),
      });
      hub.connect();
    });
    const hub = await within(called, "beforeConnect to be called");
    hub.close();
    answer({ query: { token: "late" } });
    await settle();
    assert.equal(sockets.length, 0);
    assert.equal(hub.state, "closed");
  });
});

test("what was still queued when the client stopped is dropped and reported, not sent after the next connect()", async () => {
  // The session ends while the page waits to reconnect: its beforeConnect finds no login.
  let loggedIn = true;
  let release;
  const asked = new Promise((resolve) => { release = resolve; });
  const { hub, recorder } = await openHub("stopped-queue", {
    beforeConnect: async ({ attempt }) => {
      if (attempt === 0) return undefined;
      await asked; // until the page has queued its message
      return loggedIn ? undefined : false;
    },
  });
  const errors = [];
  hub.onError((error, envelope) => errors.push([error.code, envelope.action]));
  await disconnect(hub.connectionId, 1001);
  await recorder.state("reconnecting", "the wait to reconnect");
  hub.send("written-before", "x");
  assert.equal(hub.queued, 1);
  loggedIn = false;
  release();
  await recorder.state("stopped", "the stopped state");
  assert.equal(hub.queued, 0, "nothing left to send under the next login");
  assert.deepEqual(errors, [["stopped", "written-before"]]);
});
