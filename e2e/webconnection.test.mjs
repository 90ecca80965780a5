// A page written only against West Wind Web Connection's client names (examples/chat's
// /webconnection page: new WebConnectionWebSocket(), tryConnect, onMessageHandler,
// createBroadcastMessage, addRecipient, send) loads the client with
// <script type="module" src="/ws/wshub.js"> and chats with a page on the WsHub API.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import {
  WAIT, expectThat, joinChat, newPage, say, seeLine, seePeople,
  startChat, stopChat,
} from "./harness.mjs";

let server;
let browser;
let base;

before(async () => ({ server, base, browser } = await startChat()));
after(() => stopChat(server, browser));

async function seeLogLine(page, text, what) {
  await expectThat(what, page, () =>
    page.locator("#log li", { hasText: text }).first().waitFor({ timeout: WAIT }));
}

test("the Web Connection page uses only Web Connection's names", async () => {
  const response = await fetch(`${base}/webconnection`, { signal: AbortSignal.timeout(WAIT) });
  assert.equal(response.status, 200);
  const html = await response.text();
  assert.match(html, /<script type="module" src="\/ws\/wshub\.js"><\/script>/);
  for (const name of ["new WebConnectionWebSocket()", ".tryConnect(", ".onMessageHandler", ".createBroadcastMessage(", ".addRecipient(", ".send("]) {
    assert.ok(html.includes(name), `the page uses ${name}`);
  }
  for (const name of ["WsHub", "import ", "new WebSocket(", "to.group", ".on("]) {
    assert.ok(!html.includes(name), `the page does not use ${name}`);
  }
});

test("a Web Connection page and a WsHub page chat in one room", async (t) => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  const w = await browser.newContext();
  t.after(() => Promise.all([a.close(), b.close(), w.close()]));

  const ann = await joinChat(a, base, "ann", "compat");
  await say(ann, "said before walt came");
  await seeLine(ann, "said before walt came");

  const walt = await newPage(w);
  await walt.goto(`${base}/webconnection`);
  await walt.fill("#group", "compat");
  await walt.fill("#user", "walt");
  await walt.click("#connect");
  await expectThat("the Web Connection page's onOpenHandler", walt, () =>
    walt.locator("#status", { hasText: "connected to compat as walt" }).waitFor({ timeout: WAIT }));
  await seeLogLine(walt, "ann: said before walt came", "the room's history (initialmessages) on walt's page");
  await seeLogLine(walt, "in compat: ann, walt", "who is in the room (userlist) on walt's page");
  await seePeople(ann, ["ann", "walt"], "ann sees walt in the room");

  // Web Connection page → WsHub page (createBroadcastMessage, addRecipient, send).
  await walt.fill("#text", "hello from a Web Connection page");
  await walt.click("#send");
  await seeLine(ann, "hello from a Web Connection page", { user: "walt", private: false }, "ann gets walt's message");
  await seeLogLine(walt, "walt: hello from a Web Connection page", "walt sees his own message in the room");

  // WsHub page → Web Connection page (onMessageHandler).
  await say(ann, "welcome, walt");
  await seeLogLine(walt, "ann: welcome, walt", "walt gets ann's message");

  // Arrivals and departures (userjoined, userleft).
  const bob = await joinChat(b, base, "bob", "compat");
  await seeLogLine(walt, "bob joined", "walt hears that bob came");
  await bob.close();
  await seeLogLine(walt, "bob left", "walt hears that bob left");

  assert.deepEqual(walt.problems, [], "errors in the Web Connection page's console");
  assert.deepEqual(ann.problems, [], "errors in the chat page's console");
});

test("the Web Connection page shows why a room name is refused", async (t) => {
  const w = await browser.newContext();
  t.after(() => w.close());
  const walt = await newPage(w);
  await walt.goto(`${base}/webconnection`);
  await walt.fill("#group", "no spaces here");
  await walt.fill("#user", "walt");
  await walt.click("#connect");
  await seeLogLine(walt, "not let into no spaces here: a room name is 1 to 32 letters (a-z, A-Z), digits, '-' or '_'",
    "the handler's reason (refused) on walt's page");
  assert.deepEqual(walt.problems, [], "errors in the Web Connection page's console");
});
