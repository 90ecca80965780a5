// A page written only against Web Connection's names, as its documentation's chat sample is:
// it loads the client from the hub (here, a copy of client/wshub.js that believes it was served
// at http://127.0.0.1:PORT/ws/wshub.js) and uses nothing but the global WebConnectionWebSocket,
// with no argument to its constructor, tryConnect, the on…Handler properties,
// createBroadcastMessage, addRecipient and send.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { importServedCopy, Inbox, startServer } from "./support.mjs";

let server;
const pages = [];

before(async () => {
  server = await startServer();
  assert.equal(globalThis.WebConnectionWebSocket, undefined, "nothing defined it before");
  // What `<script type="module" src="/ws/wshub.js">` does in a page.
  await importServedCopy(`${server.http}/ws/wshub.js`);
});

after(async () => {
  for (const page of pages) page.socket.close();
  await server?.kill();
});

/** The page's script, as Web Connection's sample writes it. */
function chatPage(group, user) {
  const page = { lines: new Inbox(`${user}'s page`), opened: new Inbox(`${user}'s onOpenHandler`) };

  // eslint-disable-next-line no-undef
  const socket = new WebConnectionWebSocket();
  socket.onMessageHandler = (msg) => {
    if (msg.action == "broadcastchatmessage") {
      page.lines.push(`${msg.userId}: ${msg.message}`);
    }
  };
  socket.onOpenHandler = (ev) => page.opened.push(ev);
  socket.onCloseHandler = () => {};
  socket.tryConnect(true, group, user);

  page.say = (text) => {
    const msg = socket.createBroadcastMessage("broadcastchatmessage", text);
    msg.userId = user;
    msg.groupId = group;
    if (group) msg.addRecipient(group, "group");
    socket.send(msg);
  };
  page.socket = socket;
  pages.push(page);
  return page;
}

test("the global is the served module's, and needs no URL", () => {
  assert.equal(typeof globalThis.WebConnectionWebSocket, "function");
  const socket = new globalThis.WebConnectionWebSocket();
  assert.equal(socket.hub, null);
});

test("two pages in a room chat; a page in another room sees nothing", async () => {
  const ann = chatPage("Web Connection Chat", "ann");
  const bob = chatPage("Web Connection Chat", "bob");
  const cy = chatPage("elsewhere", "cy");
  for (const page of [ann, bob, cy]) await page.opened.wait(() => true, "the socket to open");

  ann.say("hello from ann");
  await bob.lines.wait((l) => l === "ann: hello from ann", "ann's line");
  bob.say("hi ann");
  await ann.lines.wait((l) => l === "bob: hi ann", "bob's line");
  cy.say("anyone?");
  // Once cy has its own line, the hub has queued it to every page it was for; a line from bob
  // after that reaches ann after it, had it been for ann.
  await cy.lines.wait((l) => l === "cy: anyone?", "its own line");
  bob.say("bye");
  await ann.lines.wait((l) => l === "bob: bye", "bob's last line");
  await bob.lines.wait((l) => l === "bob: bye", "its own last line");

  const chat = ["ann: hello from ann", "bob: hi ann", "bob: bye"];
  assert.deepEqual(ann.lines.items, chat);
  assert.deepEqual(bob.lines.items, chat);
  assert.deepEqual(cy.lines.items, ["cy: anyone?"], "another room's page saw the chat");
  assert.equal(ann.socket.hub.url, `${server.ws}?groupId=Web%20Connection%20Chat&userId=ann`);
});
