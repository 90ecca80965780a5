// Takes the README's picture of the chat: docs/chat.png (desktop) and, with --phone, also
// docs/chat-phone.png; with --status, also docs/status.png, the status page (/status) with two
// rooms, a few messages and a closed tab. Runs the real chat example on 127.0.0.1 and Debian's
// Chromium.
//
//   node e2e/screenshot.mjs [--phone] [--status] [--out DIR]
//
// Not a test (node --test e2e/ runs *.test.mjs only): run it by hand when the page's look changes.

import { join } from "node:path";

import { ChatServer, ROOT, WAIT, joinChat, launchBrowser, say, seeLine, seePeople } from "./harness.mjs";

const args = process.argv.slice(2);
const phone = args.includes("--phone");
const status = args.includes("--status");
const outIndex = args.indexOf("--out");
const out = outIndex >= 0 ? args[outIndex + 1] : join(ROOT, "docs");

const server = new ChatServer();
let browser;
try {
  const base = await server.start(0);
  browser = await launchBrowser();
  const desktop = { viewport: { width: 1100, height: 680 }, deviceScaleFactor: 1, colorScheme: "light" };
  const ann = await joinChat(await browser.newContext(desktop), base, "ann", "lobby");
  const bob = await joinChat(await browser.newContext(desktop), base, "bob", "lobby");
  const cat = await joinChat(await browser.newContext(desktop), base, "cat", "lobby");
  await seePeople(ann, ["ann", "bob", "cat"]);

  await say(bob, "Morning! Did the deploy go out?");
  await seeLine(ann, "Morning! Did the deploy go out?");
  await say(ann, "Yes, 10 minutes ago. The hub restarted and every tab reconnected by itself.");
  await seeLine(bob, "Yes, 10 minutes ago. The hub restarted and every tab reconnected by itself.");
  await say(cat, "Confirmed, my two tabs came back without a reload.");
  await seeLine(ann, "Confirmed, my two tabs came back without a reload.");
  await say(bob, "Can you look at my PR before lunch?", "ann");
  await seeLine(ann, "Can you look at my PR before lunch?");
  await say(ann, "Sure, after standup.", "bob");
  await seeLine(bob, "Sure, after standup.");
  await say(bob, "<b>HTML</b> stays text here: <script>alert(1)</script>");
  await seeLine(ann, "<b>HTML</b> stays text here: <script>alert(1)</script>");
  await ann.fill("#text", "Great, thanks both!");
  await ann.click("#to"); // no-op focus, so the composer looks in use
  await ann.locator("#text").focus();

  await ann.screenshot({ path: join(out, "chat.png") });
  console.log(`wrote ${join(out, "chat.png")}`);

  if (phone) {
    const small = { viewport: { width: 390, height: 760 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: "light" };
    const dan = await joinChat(await browser.newContext(small), base, "dan", "lobby");
    await seeLine(dan, "<b>HTML</b> stays text here: <script>alert(1)</script>");
    await dan.screenshot({ path: join(out, "chat-phone.png") });
    await dan.click("#menu");
    await dan.waitForTimeout(300); // the drawer's slide, for the picture only
    await dan.screenshot({ path: join(out, "chat-phone-drawer.png") });
    console.log(`wrote ${join(out, "chat-phone.png")} and chat-phone-drawer.png`);
  }

  if (status) {
    // A second room, and a visitor who closes the tab.
    const dan = await joinChat(await browser.newContext(desktop), base, "dan", "design");
    const eveContext = await browser.newContext(desktop);
    const eve = await joinChat(eveContext, base, "eve", "design");
    await say(eve, "New mockups are in the drive.");
    await seeLine(dan, "New mockups are in the drive.");
    await eveContext.close();
    await seePeople(dan, ["dan"]);

    const watcher = await (await browser.newContext(desktop)).newPage();
    await watcher.goto(`${base}/status`);
    const closedShown = () => document.querySelector('#closes tr[data-reason="client_closed"]') !== null
      && document.querySelector('#rooms tr[data-room="design"]') !== null;
    await watcher.waitForFunction(closedShown, null, { timeout: WAIT, polling: 50 });
    // Some traffic just before the picture, so that the rates are not all 0.
    await say(dan, "Looks good, shipping it.");
    await say(cat, "Lunch at noon?");
    await seeLine(ann, "Lunch at noon?");
    const moving = () => Number(document.querySelector('[data-testid="rate-received"]').dataset.value) > 0;
    await watcher.waitForFunction(moving, null, { timeout: WAIT, polling: 50 });
    await watcher.screenshot({ path: join(out, "status.png") });
    console.log(`wrote ${join(out, "status.png")}`);
  }
} finally {
  await browser?.close();
  await server.stop().catch((error) => console.error(error.message));
  server.kill();
}
