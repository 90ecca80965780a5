// The chat example's status page (/status, examples/chat/status.html) in headless Chromium,
// against the real example binary on 127.0.0.1: it shows the sockets open, each room with its
// people and sockets, messages received, and a closed tab's close by reason, all from polling
// /metrics and /api/status.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { WAIT, joinChat, newPage, say, seeLine, startChat, stopChat } from "./harness.mjs";

let server;
let browser;
let base;

before(async () => ({ server, base, browser } = await startChat()));
after(() => stopChat(server, browser));

/** What the status page shows, for failure messages. */
function statusScreen(page) {
  return page.evaluate(() => {
    const text = (selector) =>
      [...document.querySelectorAll(selector)].map((n) => n.innerText.replace(/\s+/g, " ").trim()).join(" | ");
    return [
      `state: ${text("#state")} (polls: ${document.body.dataset.polls})`,
      `cards: ${text(".card")}`,
      `rooms: ${text("#rooms tr")}`,
      `closes: ${text("#closes tr")}`,
      `refusals: ${text(".refusals > div")}`,
    ].join("\n");
  }).catch((e) => `(page unreadable: ${e.message})`);
}

/**
 * Waits until `predicate(arg)`, run in the status page, holds; on failure, says `what` did not
 * happen and shows the page. Polls every 50 ms: a rate is above 0 for about a second only.
 */
async function statusShows(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: WAIT, polling: 50 });
  } catch (error) {
    const problems = page.problems.length ? `\nconsole errors:\n${page.problems.join("\n")}` : "";
    throw new Error(
      `expected the status page to show ${what}\n${error.message.split("\n")[0]}\non screen:\n${await statusScreen(page)}${problems}`,
    );
  }
}

/** A number the page shows, as the raw value it keeps in data-value (null when it shows "–"). */
function value(page, testid) {
  return page.locator(`[data-testid="${testid}"]`).first().evaluate((n) =>
    n.dataset.value === undefined || n.dataset.value === "" ? null : Number(n.dataset.value));
}

/** Predicates run in the page. */
const shows = {
  number: ([testid, n]) => document.querySelector(`[data-testid="${testid}"]`)?.dataset.value === String(n),
  atLeast: ([testid, n]) => Number(document.querySelector(`[data-testid="${testid}"]`)?.dataset.value) >= n,
  above: ([testid, n]) => {
    const v = document.querySelector(`[data-testid="${testid}"]`)?.dataset.value;
    return v !== undefined && v !== "" && Number(v) > n;
  },
  room: ([room, people, sockets]) => {
    const row = [...document.querySelectorAll("#rooms tr")].find((tr) => tr.dataset.room === room);
    return row !== undefined
      && row.querySelector('[data-testid="room-people"]').dataset.value === String(people)
      && row.querySelector('[data-testid="room-sockets"]').dataset.value === String(sockets);
  },
  close: ([reason, count]) => {
    const row = [...document.querySelectorAll("#closes tr")].find((tr) => tr.dataset.reason === reason);
    return row !== undefined && row.querySelector('[data-testid="close-count"]').dataset.value === String(count);
  },
};

/** The value of one series in the server's /metrics right now (0 when absent). */
async function scrape(name) {
  const response = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(WAIT) });
  assert.equal(response.status, 200, "GET /metrics");
  const line = (await response.text()).split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

test("the status page shows sockets, rooms, messages and a closed tab's reason", async (t) => {
  const [watcher, a, b] = [await browser.newContext(), await browser.newContext(), await browser.newContext()];
  t.after(() => Promise.all([watcher, a, b].map((c) => c.close())));

  const status = await newPage(watcher);
  await status.goto(`${base}/status`);
  await statusShows(status, "that it polled the server", () =>
    document.getElementById("state").dataset.state === "live" && Number(document.body.dataset.polls) >= 1);
  await statusShows(status, "no connection yet", shows.number, ["connections", 0]);
  assert.equal(await status.locator("#rooms tr[data-room]").count(), 0, "no rooms yet");
  assert.equal(await status.locator("#closes tr[data-reason]").count(), 0, "no closes yet");

  // Two people in one room: 2 sockets, and the room with 2 people on 2 sockets.
  const ann = await joinChat(a, base, "ann", "alpha");
  const bob = await joinChat(b, base, "bob", "alpha");
  await statusShows(status, "2 connections open", shows.number, ["connections", 2]);
  await statusShows(status, "2 sockets opened", shows.number, ["opened", 2]);
  await statusShows(status, "room alpha with 2 people on 2 sockets", shows.room, ["alpha", 2, 2]);
  assert.equal(await status.locator("#rooms tr[data-room]").count(), 1, "one room");
  assert.match(await status.locator('[data-testid="rooms-summary"]').textContent(), /^1 of 100 rooms · 2 people$/);

  // A message: received (1 more at least), routed and delivered to both.
  const received = await scrape("wshub_messages_received_total");
  const deliveries = await scrape("wshub_deliveries_total");
  const envelopes = await scrape("wshub_envelopes_sent_total");
  await say(ann, "hello from ann");
  await seeLine(bob, "hello from ann", { user: "ann" }, "bob hears ann");
  await statusShows(status, `over ${received} messages received in total`, shows.atLeast, ["total-received", received + 1]);
  await statusShows(status, "messages received at a rate above 0 /s", shows.above, ["rate-received", 0]);
  await statusShows(status, `${deliveries + 2} deliveries or more`, shows.atLeast, ["total-deliveries", deliveries + 2]);
  await statusShows(status, `${envelopes + 1} envelopes sent or more`, shows.atLeast, ["total-envelopes", envelopes + 1]);
  assert.notEqual(await value(status, "rate-deliveries"), null, "a deliveries rate once polled twice");
  assert.notEqual(await value(status, "rate-envelopes"), null, "an envelopes rate once polled twice");

  // Bob closes his tab: a browser closing a page ends its socket with a close frame (1001).
  await b.close();
  await statusShows(status, "1 connection open", shows.number, ["connections", 1]);
  await statusShows(status, "room alpha with 1 person on 1 socket", shows.room, ["alpha", 1, 1]);
  await statusShows(status, "one close, client_closed", shows.close, ["client_closed", 1]);
  assert.equal(await status.locator("#closes tr[data-reason]").count(), 1, "one reason");
  assert.equal(await value(status, "closes-total"), 1);
  for (const testid of ["upgrades-refused", "messages-refused", "forwards-failed"]) {
    assert.equal(await value(status, testid), 0, `no ${testid}`);
  }
  assert.deepEqual(status.problems, [], "errors in the status page's console");
  assert.deepEqual(ann.problems, [], "errors in ann's console");
});

test("the status page reads Prometheus's text format, escapes included", async (t) => {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await newPage(context);
  await page.goto(`${base}/status`);
  const parsed = await page.evaluate(() => {
    const text = [
      "# HELP wshub_connections Sockets open on this node.",
      "# TYPE wshub_connections gauge",
      "wshub_connections 3",
      "",
      'wshub_connections_closed_total{reason="client_closed"} 2',
      'wshub_connections_closed_total{reason="idle",node="a"} 1 1700000000000',
      'odd_total{label="a \\"quoted\\" \\\\ back,slash} \\n"} 4',
      "wshub_messages_received_total +Inf",
      "broken{label=unquoted} 1",
      "no_value",
    ].join("\n");
    const metrics = parseMetrics(text);
    return {
      names: [...metrics.keys()],
      connections: total(metrics, "wshub_connections"),
      absent: total(metrics, "wshub_deliveries_total"),
      closes: byLabel(metrics, "wshub_connections_closed_total", "reason"),
      odd: metrics.get("odd_total")[0].labels.label,
      infinite: total(metrics, "wshub_messages_received_total"),
    };
  });
  assert.deepEqual(parsed.names, [
    "wshub_connections", "wshub_connections_closed_total", "odd_total", "wshub_messages_received_total",
  ]);
  assert.equal(parsed.connections, 3);
  assert.equal(parsed.absent, null, "an absent series is null, shown as –");
  assert.deepEqual(parsed.closes, [["client_closed", 2], ["idle", 1]]);
  assert.equal(parsed.odd, 'a "quoted" \\ back,slash} \n');
  assert.equal(parsed.infinite, Infinity);
  assert.deepEqual(page.problems, []);
});
