// The chat example (examples/chat) in headless Chromium: rooms, private messages, history,
// presence, safe rendering and the phone layout, against the real example binary on 127.0.0.1.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import {
  WAIT, expectThat, joinChat, lineTexts, newPage, say, seeLine, seePeople, waitOnline,
  startChat, stopChat,
} from "./harness.mjs";

let server;
let browser;
let base;

before(async () => ({ server, base, browser } = await startChat()));
after(() => stopChat(server, browser));

/** `n` separate visitors (browser contexts: own cookies and storage), closed after the test. */
async function visitors(t, n, options = {}) {
  const contexts = [];
  for (let i = 0; i < n; i++) contexts.push(await browser.newContext(options));
  t.after(() => Promise.all(contexts.map((c) => c.close())));
  return contexts;
}

function assertNoProblems(...pages) {
  for (const page of pages) assert.deepEqual(page.problems, [], "errors in the page's console");
}

test("two pages chat in a room, and a third in another room sees nothing", async (t) => {
  const [a, b, c] = await visitors(t, 3);
  const ann = await joinChat(a, base, "ann", "alpha");
  const bob = await joinChat(b, base, "bob", "alpha");
  const cat = await joinChat(c, base, "cat", "beta");

  await say(ann, "hi bob");
  await seeLine(bob, "hi bob", { user: "ann", private: false }, "bob sees ann's message");
  const own = await seeLine(ann, "hi bob", { user: "ann" }, "ann sees her own message");
  assert.ok(await own.evaluate((node) => node.classList.contains("own")), "ann's own line is marked as hers");
  await say(bob, "hi ann, how are you?");
  await seeLine(ann, "hi ann, how are you?", { user: "bob" }, "ann sees bob's answer");

  // Cat talks in beta and hears only that; alpha does not hear cat.
  await say(cat, "anyone in beta?");
  await seeLine(cat, "anyone in beta?", { user: "cat" });
  await say(ann, "still here");
  await seeLine(bob, "still here", { user: "ann" });
  assert.deepEqual(await lineTexts(cat), ["anyone in beta?"], "cat heard only its own room");
  assert.deepEqual(await lineTexts(bob), ["hi bob", "hi ann, how are you?", "still here"]);
  assert.deepEqual(await lineTexts(ann), ["hi bob", "hi ann, how are you?", "still here"]);
  await seePeople(ann, ["ann", "bob"]);
  await seePeople(cat, ["cat"]);
  assertNoProblems(ann, bob, cat);
});

test("a private message reaches only its user's tabs and the sender's", async (t) => {
  const [a, b, c] = await visitors(t, 3);
  const ann1 = await joinChat(a, base, "ann", "gamma");
  const ann2 = await joinChat(a, base, "ann", "gamma"); // a second tab of ann's
  const bob = await joinChat(b, base, "bob", "gamma");
  const cat = await joinChat(c, base, "cat", "gamma");
  for (const page of [ann1, ann2, bob, cat]) await seePeople(page, ["ann", "bob", "cat"]);

  await say(bob, "psst, ann: a secret", "ann");
  await seeLine(ann1, "psst, ann: a secret", { user: "bob", private: true }, "ann's first tab gets it");
  await seeLine(ann2, "psst, ann: a secret", { user: "bob", private: true }, "ann's second tab gets it");
  await seeLine(bob, "psst, ann: a secret", { user: "bob", private: true }, "the sender sees it, marked private");
  assert.match(await bob.locator("#messages .msg.private .badge").first().textContent(), /private to ann/);

  // Ann answers by picking bob in the people list.
  await ann2.click('#people li[data-user="bob"] button');
  assert.equal(await ann2.inputValue("#to"), "bob", "clicking bob makes the message private to him");
  await ann2.fill("#text", "got it, bob");
  await ann2.click("#send");
  await seeLine(bob, "got it, bob", { user: "ann", private: true }, "bob gets ann's private answer");
  await seeLine(ann1, "got it, bob", { user: "ann", private: true }, "ann's other tab shows her answer");

  // A message to the room after both: once cat has it, cat would have had the private ones.
  await say(bob, "hello everyone");
  for (const page of [ann1, ann2, cat]) await seeLine(page, "hello everyone", { user: "bob", private: false });
  assert.deepEqual(await lineTexts(cat), ["hello everyone"], "cat saw no private message");
  assert.deepEqual(await lineTexts(ann1), ["psst, ann: a secret", "got it, bob", "hello everyone"]);
  assertNoProblems(ann1, ann2, bob, cat);
});

test("a newcomer gets the room's history", async (t) => {
  const [a, d] = await visitors(t, 2);
  const ann = await joinChat(a, base, "ann", "delta");
  await say(ann, "first message");
  await say(ann, "second message");
  await seeLine(ann, "second message");

  const dan = await joinChat(d, base, "dan", "delta");
  await seeLine(dan, "second message", { user: "ann" }, "the history on dan's page");
  assert.deepEqual(await lineTexts(dan), ["first message", "second message"], "history, oldest first");
  await say(dan, "thanks for the context");
  await seeLine(ann, "thanks for the context", { user: "dan" });
  assertNoProblems(ann, dan);
});

test("the people list follows joins and leaves, and tabs of one user count once", async (t) => {
  const [a, b] = await visitors(t, 2);
  const ann = await joinChat(a, base, "ann", "epsilon");
  await seePeople(ann, ["ann"]);
  assert.equal(await ann.locator('#people li[data-user="ann"] .you').count(), 1, "ann is marked as herself");

  const bob1 = await joinChat(b, base, "bob", "epsilon");
  await seePeople(ann, ["ann", "bob"], "ann sees bob arrive");
  await seePeople(bob1, ["ann", "bob"]);
  await expectThat("a note that bob joined", ann, () =>
    ann.locator("#messages .note", { hasText: "bob joined" }).waitFor({ timeout: WAIT }));

  const bob2 = await joinChat(b, base, "bob", "epsilon");
  await seePeople(bob2, ["ann", "bob"]);
  await bob2.close();
  // Bob is still there with his first tab.
  await say(bob1, "one tab left");
  await seeLine(ann, "one tab left", { user: "bob" });
  await seePeople(ann, ["ann", "bob"]);

  await bob1.close();
  await seePeople(ann, ["ann"], "ann sees bob go once his last tab closed");
  await expectThat("a note that bob left", ann, () =>
    ann.locator("#messages .note", { hasText: "bob left" }).waitFor({ timeout: WAIT }));
  assert.equal(await ann.locator("#messages .note", { hasText: "bob joined" }).count(), 1,
    "bob's second tab was no arrival");
  assertNoProblems(ann);
});

test("the welcome form takes only the nicknames and room names the chat takes", async (t) => {
  const [a] = await visitors(t, 1);
  const page = await newPage(a);
  await page.goto(`${base}/?room=theta`);
  for (const [nick, room] of [["<b>ann</b>", "theta"], ["ann smith", "theta"], ["ann", "two words"], ["ann", "café"]]) {
    await page.fill("#nick", nick);
    await page.fill("#room", room);
    await page.click("#join");
    assert.ok(await page.locator("#welcome").isVisible(), `${nick} in ${room}: still on the welcome form`);
    assert.ok(await page.locator("#app").isHidden());
    assert.ok(await page.locator("#join-form").evaluate((form) => !form.checkValidity()), `${nick} in ${room} is invalid`);
  }
  // Any script for a nickname, and the longest names.
  const nick = "Jürgen.K_-" + "é".repeat(22);
  const room = "R".repeat(29) + "-_9";
  await page.fill("#nick", nick);
  await page.fill("#room", room);
  await page.click("#join");
  await waitOnline(page, "the page online with the longest names");
  await seePeople(page, [nick]);
  assertNoProblems(page);
});

test("a message with <script> and HTML renders as text", async (t) => {
  const [a, b] = await visitors(t, 2);
  const ann = await joinChat(a, base, "ann", "zeta");
  const bob = await joinChat(b, base, "bob", "zeta");
  const payload = `<script>window.__pwned = "script"</script><img src=x onerror="window.__pwned='img'"><b>bold</b> & "quotes" 'too'`;

  await say(ann, payload);
  await seeLine(bob, payload, { user: "ann" }, "bob sees the markup as text");
  await seeLine(ann, payload, { user: "ann" });

  // Published lines skip the handler (no escaping): still text.
  const published = `<img src=y onerror="window.__pwned='published'"><script>window.__pwned='published'</script>`;
  await server.publish({
    action: "broadcastchatmessage",
    message: { user: "<i>eve</i>", text: published, time: "2025-01-01T00:00:00Z" },
    recipients: [{ type: "group", value: "zeta" }],
  });
  await seeLine(bob, published, { user: "<i>eve</i>" }, "bob sees the published markup as text");

  for (const page of [ann, bob]) {
    const created = await page.locator("#messages script, #messages img, #messages b, #messages i").count();
    assert.equal(created, 0, "no element was made from a message");
    assert.equal(await page.evaluate(() => window.__pwned), undefined, "no script ran");
  }
  assertNoProblems(ann, bob);
});

test("on a phone-sized screen the chat fits and the people list opens from the menu", async (t) => {
  const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
  const [a] = await visitors(t, 1, phone);
  const [b] = await visitors(t, 1);
  const ann = await joinChat(a, base, "ann", "eta");
  await joinChat(b, base, "bob", "eta");
  await seePeople(ann, ["ann", "bob"]);

  const width = await ann.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `nothing overflows sideways (scroll width ${width})`);
  for (const id of ["#text", "#send", "#to", "#menu", "#state"]) {
    const box = await ann.locator(id).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390 && box.y + box.height <= 844, `${id} is on screen`);
  }
  // The people list is in a drawer, off screen until the menu opens it.
  const closed = await ann.locator("#people").boundingBox();
  assert.ok(closed && closed.x + closed.width <= 0, "the drawer starts closed, off screen");
  await ann.click("#menu");
  await expectThat("the drawer open", ann, () =>
    ann.waitForFunction(() => {
      const box = document.getElementById("people").getBoundingClientRect();
      return box.left >= 0 && box.right <= 390;
    }, null, { timeout: WAIT }));
  await ann.click('#people li[data-user="bob"] button');
  assert.equal(await ann.inputValue("#to"), "bob");
  await expectThat("the drawer closed again", ann, () =>
    ann.waitForFunction(() => document.getElementById("people").getBoundingClientRect().right <= 0, null, { timeout: WAIT }));

  await ann.fill("#text", "typed on a phone");
  await ann.click("#send");
  await seeLine(ann, "typed on a phone", { user: "ann", private: true });
  assertNoProblems(ann);
});

test("the page is served with the client module beside the socket", async () => {
  const page = await fetch(`${base}/`, { signal: AbortSignal.timeout(WAIT) });
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /import \{ WsHub, to \} from "\/ws\/wshub\.js"/);
  assert.doesNotMatch(html, /new WebSocket\(/, "the page uses the client library, not a raw socket");
  const module = await fetch(`${base}/ws/wshub.js`, { signal: AbortSignal.timeout(WAIT) });
  assert.equal(module.status, 200);
  assert.match(module.headers.get("content-type"), /^text\/javascript/);
});
