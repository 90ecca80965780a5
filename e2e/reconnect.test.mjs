// The chat page survives a server restart: the example is stopped with SIGTERM (sockets closed
// with 1001) and started again on the same port; every page shows the reconnect banner, comes
// back by itself, hides the banner and keeps working, and what was typed meanwhile is sent.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import {
  WAIT, expectThat, joinChat, lineTexts, say, seeLine, seePeople, waitOnline,
  startChat, stopChat,
} from "./harness.mjs";

let server;
let browser;
let base;

before(async () => ({ server, base, browser } = await startChat()));
after(() => stopChat(server, browser));

async function bannerShown(page, who) {
  await expectThat(`the reconnect banner on ${who}'s page`, page, () =>
    page.locator("#banner").waitFor({ state: "visible", timeout: WAIT }));
  assert.match(await page.textContent("#banner"), /reconnecting/i);
  assert.notEqual(await page.getAttribute("#state", "data-state"), "open");
}

async function bannerHidden(page, who) {
  await waitOnline(page, `${who}'s page online again`);
  await expectThat(`the reconnect banner hidden on ${who}'s page`, page, () =>
    page.locator("#banner").waitFor({ state: "hidden", timeout: WAIT }));
}

test("after the server restarts, the pages reconnect by themselves and keep working", async (t) => {
  const a = await browser.newContext();
  const b = await browser.newContext();
  t.after(() => Promise.all([a.close(), b.close()]));
  const ann = await joinChat(a, base, "ann", "ops");
  const bob = await joinChat(b, base, "bob", "ops");
  await seePeople(ann, ["ann", "bob"]);
  assert.ok(await ann.locator("#banner").isHidden(), "no banner while connected");
  await say(ann, "before the restart");
  await seeLine(bob, "before the restart", { user: "ann" });

  const port = server.port;
  await server.stop(); // SIGTERM; resolves once the process exited with status 0
  await bannerShown(ann, "ann");
  await bannerShown(bob, "bob");

  // Typed while the server is away: queued by the client, sent once it is back.
  await say(ann, "typed while offline");

  await server.start(port);
  assert.equal(server.port, port, "the example is back on the same port");
  await bannerHidden(ann, "ann");
  await bannerHidden(bob, "bob");
  await seePeople(ann, ["ann", "bob"], "ann sees bob again");
  await seePeople(bob, ["ann", "bob"], "bob sees ann again");

  // The queued message arrived (live, or in the new server's history if bob came back later).
  await seeLine(bob, "typed while offline", { user: "ann" }, "bob gets what ann typed while offline");
  await say(bob, "after the restart");
  await seeLine(ann, "after the restart", { user: "bob" }, "the pages keep working");
  assert.deepEqual(await lineTexts(ann), ["before the restart", "typed while offline", "after the restart"],
    "nothing lost and nothing shown twice");
  for (const page of [ann, bob]) {
    // Chromium logs the refused connection attempts while the server is away; nothing else.
    const unexpected = page.problems.filter((p) => !/WebSocket connection to .* failed/.test(p));
    assert.deepEqual(unexpected, [], "errors in the page's console");
  }
});
