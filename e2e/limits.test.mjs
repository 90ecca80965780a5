// The chat's room limit in headless Chromium: with every room taken, a page asking for a new one
// is sent back to the welcome form with the handler's reason, and an existing room still lets
// people in. A server of its own: filling it would turn the other files' rooms away.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import {
  WAIT, expectThat, joinChat, newPage, seePeople, startChat, stopChat,
} from "./harness.mjs";

/** examples/chat/rooms/mod.rs's MAX_ROOMS. */
const MAX_ROOMS = 100;

let server;
let browser;
let base;

before(async () => ({ server, base, browser } = await startChat()));
after(() => stopChat(server, browser));

/** Opens one raw socket in each of `full-0` … `full-99` from a page of `context`, each let in
 *  (its first chat envelope is `initialmessages`). The sockets live as long as the page. */
async function fillTheChat(context) {
  const page = await newPage(context);
  await page.goto(`${base}/webconnection`); // same origin as the sockets
  const admitted = await page.evaluate(async ({ rooms, wait }) => {
    const url = (i) => `ws://${location.host}/ws?groupId=full-${i}&userId=filler`;
    const open = (i) => new Promise((resolve, reject) => {
      const ws = new WebSocket(url(i));
      const timer = setTimeout(() => reject(new Error(`socket ${i} got no answer`)), wait);
      ws.onmessage = (event) => {
        const { action } = JSON.parse(event.data);
        if (action === "__connected") return;
        clearTimeout(timer);
        resolve(action);
      };
      ws.onerror = () => reject(new Error(`socket ${i} failed`));
    });
    const answers = [];
    for (let i = 0; i < rooms; i++) answers.push(await open(i));
    return answers;
  }, { rooms: MAX_ROOMS, wait: WAIT });
  assert.deepEqual(new Set(admitted), new Set(["initialmessages"]), "every filler was let in");
  return page;
}

test("a new room past the chat's limit is refused, and the page says why", async (t) => {
  const f = await browser.newContext();
  const a = await browser.newContext();
  t.after(() => Promise.all([f.close(), a.close()]));
  await fillTheChat(f);

  const ann = await newPage(a);
  await ann.goto(`${base}/?room=one-too-many`);
  await ann.fill("#nick", "ann");
  await ann.click("#join");
  await expectThat("the reason on the welcome form", ann, () =>
    ann.locator("#join-error", { hasText: "Could not join #one-too-many" }).waitFor({ timeout: WAIT }));
  assert.equal(await ann.textContent("#join-error"),
    `Could not join #one-too-many: the chat has ${MAX_ROOMS} rooms, its limit: join one of them, or try again later`);
  assert.ok(await ann.locator("#welcome").isVisible(), "back on the welcome form");
  assert.ok(await ann.locator("#app").isHidden());
  assert.equal(await ann.inputValue("#room"), "one-too-many", "the room asked for, to change");
  assert.equal(await ann.evaluate(() => localStorage.getItem("wshub-chat:rooms")), "[]",
    "the refused room is not offered again");

  // An existing room lets her in; the error goes.
  await ann.fill("#room", "full-7");
  await ann.click("#join");
  await seePeople(ann, ["ann", "filler"], "ann in a room that exists");
  assert.ok(await ann.locator("#join-error").isHidden());

  // A returning visitor (same context) lands in the room of the address, also existing.
  const again = await joinChat(a, base, "ann", "full-8");
  await seePeople(again, ["ann", "filler"]);
  assert.deepEqual(ann.problems, [], "errors in the page's console");
});
