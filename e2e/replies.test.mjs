// What a person sees of the hub's answers, in headless Chromium against the chat example: a
// message is sent with `hub.request`, so the box empties only once the room has it, and keeps
// the text with the reason when the handler refused it; and a person logged out by the server
// (close code 4401) is told so and the page stops reconnecting.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import {
  WAIT, expectThat, joinChat, seeLine, seePeople, startChat, stopChat,
} from "./harness.mjs";

let server;
let browser;
let base;

before(async () => ({ server, base, browser } = await startChat()));
after(() => stopChat(server, browser));

test("a refused message stays in the box with the reason; an accepted one empties it", async (t) => {
  const context = await browser.newContext();
  t.after(() => context.close());
  const ann = await joinChat(context, base, "ann", "replies");

  // One character over the handler's limit (the box's maxlength stops a person typing it).
  const long = "x".repeat(2001);
  await ann.evaluate((text) => { document.getElementById("text").value = text; }, long);
  await ann.click("#send");
  await expectThat("the handler's reason under the messages", ann, () =>
    ann.locator("#messages .note.error", { hasText: "Not sent: the message is over 2000 characters" })
      .waitFor({ timeout: WAIT }));
  assert.equal(await ann.inputValue("#text"), long, "the refused text stays, to be fixed");
  assert.equal(await ann.locator("#messages .msg").count(), 0, "nothing reached the room");

  await ann.fill("#text", "short enough");
  await ann.click("#send");
  await seeLine(ann, "short enough", { user: "ann" });
  await expectThat("the box emptied once the room had the line", ann, () =>
    ann.waitForFunction(() => document.getElementById("text").value === "", null, { timeout: WAIT }));
  assert.equal(await ann.locator("#messages .note.error").count(), 1, "no other error");
  assert.deepEqual(ann.problems, [], "errors in the page's console");
});

test("a person logged out by the server is told so, and the page does not come back", async (t) => {
  const [a, b] = [await browser.newContext(), await browser.newContext()];
  t.after(() => Promise.all([a.close(), b.close()]));
  const ann = await joinChat(a, base, "ann", "logout");
  const bob = await joinChat(b, base, "bob", "logout");
  await seePeople(ann, ["ann", "bob"]);
  const joins = () => ann.locator("#messages .note", { hasText: "bob joined" }).count();
  const joinedBefore = await joins();

  assert.equal(await server.logout("bob"), 1, "bob's one socket closed");
  await expectThat("bob's page saying he was logged out", bob, () =>
    bob.locator("#join-error", { hasText: "You were logged out. Join again to come back." })
      .waitFor({ timeout: WAIT }));
  assert.ok(await bob.locator("#welcome").isVisible(), "back on the welcome form");
  await seePeople(ann, ["ann"], "bob gone from ann's list");

  // The client stopped: no attempt is scheduled, so none comes. Watched for longer than the
  // first reconnect delay (at most 500 ms) with room to spare: a bounded look for an absence.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(await server.logout("bob"), 0, "bob did not reconnect");
  assert.equal(await joins(), joinedBefore, "ann saw bob join only the first time");

  // Joining again brings him back.
  await bob.click("#join");
  await seePeople(ann, ["ann", "bob"], "bob back after joining again");
  assert.deepEqual(bob.problems, [], "errors in bob's console");
});
