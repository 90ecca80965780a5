// The West Wind Web Connection compatibility layer (WebConnectionWebSocket) against the real
// examples/hyper_server on 127.0.0.1.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { WebConnectionMessage, WebConnectionWebSocket, WsHub, WsHubError } from "../wshub.js";
import { Inbox, startServer } from "./support.mjs";

const FAST = { minDelay: 20, maxDelay: 200 };

let server;
const servers = [];
const sockets = [];

before(async () => {
  server = await startServer();
  servers.push(server);
});

after(async () => {
  for (const socket of sockets) socket.close();
  await Promise.all(servers.map((s) => s.kill()));
});

/** A Web Connection socket with inboxes for its four handlers. */
function wcSocket(name, url = server.ws) {
  const socket = new WebConnectionWebSocket({ url, reconnect: FAST });
  sockets.push(socket);
  const inbox = {
    messages: new Inbox(`${name} onMessageHandler`),
    opens: new Inbox(`${name} onOpenHandler`),
    closes: new Inbox(`${name} onCloseHandler`),
    errors: new Inbox(`${name} onErrorHandler`),
  };
  socket.onMessageHandler = inbox.messages.handler;
  socket.onOpenHandler = inbox.opens.handler;
  socket.onCloseHandler = inbox.closes.handler;
  socket.onErrorHandler = inbox.errors.handler;
  return { socket, ...inbox };
}

test("loading the module defines the global WebConnectionWebSocket", () => {
  assert.equal(globalThis.WebConnectionWebSocket, WebConnectionWebSocket);
});

test("tryConnect, onOpenHandler, createBroadcastMessage + addRecipient, send, onMessageHandler", async () => {
  const ann = wcSocket("ann");
  const bob = wcSocket("bob");
  const cy = wcSocket("cy");

  assert.throws(
    () => ann.socket.send(ann.socket.createBroadcastMessage("early", "x")),
    (e) => e instanceof WsHubError && e.code === "not_connected",
  );

  assert.equal(ann.socket.tryConnect(true, "wc-room", "wc-ann"), ann.socket);
  bob.socket.tryConnect(true, "wc-room", "wc-bob");
  cy.socket.tryConnect(true, "wc-other", "wc-cy");
  assert.ok(ann.socket.hub instanceof WsHub);

  const opened = await ann.opens.wait(() => true, "the socket to open");
  assert.equal(opened.type, "open");
  assert.equal(opened.userId, "wc-ann");
  assert.equal(opened.groupId, "wc-room");
  assert.match(opened.connectionId, /^[0-9a-f]{32}$/);
  await bob.opens.wait(() => true, "the socket to open");
  await cy.opens.wait(() => true, "the socket to open");

  // As in Web Connection's chat sample.
  const msg = ann.socket.createBroadcastMessage("broadcastchatmessage", "hello **there**");
  assert.ok(msg instanceof WebConnectionMessage);
  assert.deepEqual(
    { ...msg },
    {
      action: "broadcastchatmessage",
      message: "hello **there**",
      groupId: "wc-room",
      userId: "wc-ann",
      recipients: [],
    },
  );
  msg.userId = "wc-ann";
  msg.groupId = "wc-room";
  assert.equal(msg.addRecipient("wc-room", "group"), msg);
  ann.socket.send(msg);

  const received = await bob.messages.wait(
    (m) => m.action === "broadcastchatmessage",
    "the chat message",
  );
  assert.deepEqual(received, {
    action: "broadcastchatmessage",
    message: "hello **there**",
    groupId: "wc-room",
    userId: "wc-ann",
    recipients: [],
  });
  assert.equal(typeof received.message, "string", "a string message stays a string");
  // The sender is in the group too.
  await ann.messages.wait((m) => m.action === "broadcastchatmessage", "its own chat message");

  // Several recipients, chained; and a message sent as JSON text.
  const notMe = ann.socket
    .createBroadcastMessage("notme", JSON.stringify({ n: 1 }))
    .addRecipient("wc-room", "group")
    .addRecipient("wc-ann", "allButUser");
  ann.socket.send(notMe);
  const json = ann.socket.createBroadcastMessage("json-text", "sent as text");
  json.addRecipient("wc-cy"); // type defaults to "user"
  ann.socket.send(JSON.stringify(json));
  const marker = ann.socket.createBroadcastMessage("marker", "");
  marker.addRecipient("wc-room", "group").addRecipient("wc-other", "group");
  ann.socket.send(marker);

  for (const inbox of [ann, bob, cy]) await inbox.messages.wait((m) => m.action === "marker", "the marker");
  const actions = (inbox) => inbox.messages.items.map((m) => m.action);
  assert.deepEqual(actions(ann), ["broadcastchatmessage", "marker"]);
  assert.deepEqual(actions(bob), ["broadcastchatmessage", "notme", "marker"]);
  assert.deepEqual(actions(cy), ["json-text", "marker"]);
  assert.equal(bob.messages.items[1].message, '{"n":1}');
  assert.deepEqual(cy.messages.items[0].recipients, [], "receivers never see the list");
  for (const inbox of [ann, bob, cy]) {
    assert.equal(inbox.errors.items.length, 0);
    assert.equal(inbox.closes.items.length, 0);
  }
});

test("onErrorHandler gets the hub's __error envelopes; onMessageHandler does not", async () => {
  const eve = wcSocket("eve");
  eve.socket.tryConnect(true, "", "wc-eve");
  await eve.opens.wait(() => true, "the socket to open");
  eve.socket.send(eve.socket.createBroadcastMessage("__reserved", "x"));
  const error = await eve.errors.wait((e) => e.action === "__error", "an __error envelope");
  assert.equal(error.message.code, "forbidden");
  const after = eve.socket.createBroadcastMessage("after", "");
  after.addRecipient("wc-eve", "user");
  eve.socket.send(after);
  await eve.messages.wait((m) => m.action === "after", "a message after the error");
  assert.deepEqual(
    eve.messages.items.map((m) => m.action),
    ["after"],
    "onMessageHandler saw the hub's own envelopes",
  );
});

test("tryConnect(false): onCloseHandler when the server goes away, and no reconnect", async () => {
  const own = await startServer();
  servers.push(own);
  const solo = wcSocket("solo", own.ws);
  solo.socket.tryConnect(false, "", "wc-solo");
  await solo.opens.wait(() => true, "the socket to open");
  await own.stop();
  const closed = await solo.closes.wait(() => true, "onCloseHandler after the server stopped");
  assert.equal(closed.type, "close");
  assert.equal(closed.code, 1001);
  assert.equal(solo.socket.hub.state, "closed");
});

test("tryConnect(true): reconnects after a restart and calls onOpenHandler again", async () => {
  const first = await startServer();
  servers.push(first);
  const phoenix = wcSocket("phoenix", first.ws);
  phoenix.socket.tryConnect(true, "wc-phoenix", "wc-phoenix");
  const before = await phoenix.opens.wait(() => true, "the socket to open");
  await first.stop();
  await phoenix.closes.wait((c) => c.code === 1001, "onCloseHandler after the server stopped");
  const second = await startServer(first.addr);
  servers.push(second);
  const again = await phoenix.opens.wait(
    (o) => o.connectionId !== before.connectionId,
    "onOpenHandler after the restart",
  );
  assert.equal(again.userId, "wc-phoenix");
  const msg = phoenix.socket.createBroadcastMessage("back", "again");
  msg.addRecipient("wc-phoenix", "group");
  phoenix.socket.send(msg);
  await phoenix.messages.wait((m) => m.action === "back", "a message after the restart");
});

test("send before the socket opens is queued; close() reports what it drops to onErrorHandler", async () => {
  // Nothing listens on port 1: the socket never opens.
  const never = wcSocket("never", "ws://127.0.0.1:1/ws");
  never.socket.tryConnect(true, "", "wc-never");
  never.socket.send(never.socket.createBroadcastMessage("pending", "x"));
  assert.equal(never.socket.hub.queued, 1);
  never.socket.close();
  const error = await never.errors.wait((e) => e.message.code === "closed", "the dropped message");
  assert.equal(error.action, "__error");
  assert.equal(never.socket.hub.state, "closed");
  assert.equal(never.opens.items.length, 0);
});
