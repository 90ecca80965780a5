// The chat example as a cluster: two chat processes on one Redis, each page on its own node,
// chatting as in one process: messages, the people in the room, and its history.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import {
  ChatServer, joinChat, launchBrowser, lineTexts, say, seeLine, seePeople, startRedis,
} from "./harness.mjs";

let redis;
let nodes = [];
let browser;

before(async () => {
  redis = await startRedis();
  for (let i = 0; i < 2; i++) {
    const node = new ChatServer({ WSHUB_REDIS_URL: redis.url });
    nodes.push(node);
    await node.start(0);
  }
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const node of nodes) {
    try {
      await node.stop();
    } finally {
      node.kill();
    }
  }
  redis?.stop();
});

test("two pages on two chat nodes chat as in one chat", async (t) => {
  const contexts = [];
  for (let i = 0; i < 3; i++) contexts.push(await browser.newContext());
  t.after(() => Promise.all(contexts.map((c) => c.close())));
  const [a, b] = nodes;

  const ann = await joinChat(contexts[0], a.base, "ann", "common");
  const bob = await joinChat(contexts[1], b.base, "bob", "common");
  await seePeople(ann, ["ann", "bob"], "ann, on the first node, sees bob of the second");
  await seePeople(bob, ["ann", "bob"], "bob sees ann");

  await say(ann, "hello from node one");
  await seeLine(bob, "hello from node one", { user: "ann", private: false }, "bob gets ann's line");
  await say(bob, "and hello from node two");
  await seeLine(ann, "and hello from node two", { user: "bob", private: false }, "ann gets bob's");

  await say(bob, "just for you, ann", "ann");
  await seeLine(ann, "just for you, ann", { user: "bob", private: true }, "a private line crosses nodes");

  // A newcomer on the first node gets the room's history, written on both nodes.
  const cat = await joinChat(contexts[2], a.base, "cat", "common");
  await seeLine(cat, "and hello from node two", { user: "bob" }, "cat gets the history");
  assert.deepEqual(await lineTexts(cat), ["hello from node one", "and hello from node two"]);
  for (const page of [ann, bob, cat]) await seePeople(page, ["ann", "bob", "cat"]);

  // Bob leaves: both nodes' pages see it.
  await contexts[1].close();
  await seePeople(ann, ["ann", "cat"], "ann sees bob leave");
  await seePeople(cat, ["ann", "cat"], "cat sees bob leave");
});
