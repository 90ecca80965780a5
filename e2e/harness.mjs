// Shared pieces of the browser tests: the real chat example as a child process on 127.0.0.1,
// Debian's Chromium driven by playwright-core, and waits that are all bounded and say what did
// not happen.
//
// The chat binary is $WSHUB_CHAT_BIN when set (.ci/browser-tests.sh builds it and sets it), else
// it is built here with `cargo build --example chat --features cluster`.

import { spawn, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const CHROMIUM = process.env.WSHUB_CHROMIUM || "/usr/bin/chromium";
export const TOKEN = "e2e-publish-token-0123456789";

/** The longest any single event may take in these tests (a reconnect after a restart included). */
export const WAIT = 20_000;
/** How long the example may take to print its address. */
const STARTUP = 60_000;
/** How long it may take to exit after SIGTERM. */
const EXIT = 20_000;

let builtBinary = null;

/** The chat example's executable, built if need be. */
export function chatBinary() {
  if (process.env.WSHUB_CHAT_BIN) return process.env.WSHUB_CHAT_BIN;
  if (builtBinary) return builtBinary;
  const build = spawnSync(
    "cargo",
    ["build", "--example", "chat", "--features", "cluster", "--message-format=json-render-diagnostics"],
    { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: 600_000 },
  );
  if (build.status !== 0) throw new Error(`cargo build --example chat failed (status ${build.status})`);
  const executable = build.stdout
    .split("\n")
    .filter((line) => line.includes('"executable"'))
    .map((line) => JSON.parse(line).executable)
    .filter((path) => path && /\/chat$/.test(path))
    .pop();
  if (!executable) throw new Error("cargo did not report the chat example's executable");
  builtBinary = executable;
  return executable;
}

/**
 * The chat example, running. `start()` launches it on `port` (0: any free port) and resolves
 * once it printed its address; `stop()` sends SIGTERM and waits for it to exit with status 0.
 */
export class ChatServer {
  /** `env`: more environment for the process (`WSHUB_REDIS_URL` makes it a cluster node). */
  constructor(env = {}) {
    this.env = env;
    this.child = null;
    this.port = 0;
    this.base = "";
    this.output = ""; // stdout and stderr of every run, for failure messages
  }

  async start(port = this.port) {
    if (this.child) throw new Error("the chat example is already running");
    const bin = chatBinary();
    if (!existsSync(bin)) throw new Error(`no chat executable at ${bin}: run cargo build --example chat`);
    const child = spawn(bin, [], {
      cwd: ROOT,
      env: {
        ...process.env,
        WSHUB_ADDR: `127.0.0.1:${port}`,
        WSHUB_PUBLISH_TOKEN: TOKEN,
        RUST_LOG: process.env.RUST_LOG || "info",
        ...this.env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (data) => { this.output += data; });
    child.stdout.setEncoding("utf8");
    const address = await new Promise((resolve, reject) => {
      let stdout = "";
      const timer = setTimeout(
        () => reject(new Error(`the chat example printed no address within ${STARTUP} ms:\n${this.tail()}`)),
        STARTUP,
      );
      child.stdout.on("data", (data) => {
        this.output += data;
        stdout += data;
        const found = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/m.exec(stdout);
        if (found) {
          clearTimeout(timer);
          resolve(found);
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the chat example exited (${code ?? signal}) before listening:\n${this.tail()}`));
      });
    });
    this.base = address[1];
    this.port = Number(address[2]);
    return this.base;
  }

  /** SIGTERM, then waits for a clean exit (status 0); SIGKILL past the bound. */
  async stop() {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    child.kill("SIGTERM");
    let timer;
    const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve(null), EXIT); });
    const result = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (result === null) {
      child.kill("SIGKILL");
      await exited;
      throw new Error(`the chat example did not exit within ${EXIT} ms of SIGTERM:\n${this.tail()}`);
    }
    if (result.code !== 0) {
      throw new Error(`the chat example exited with ${result.code ?? result.signal} after SIGTERM:\n${this.tail()}`);
    }
  }

  /** For after hooks: ends the process whatever state it is in. */
  kill() {
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }

  tail(lines = 40) {
    return this.output.split("\n").slice(-lines).join("\n");
  }

  /** Publishes `envelope` with the token; resolves to the parsed answer. */
  async publish(envelope) {
    const response = await fetch(`${this.base}/api/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(envelope),
      signal: AbortSignal.timeout(WAIT),
    });
    const body = await response.text();
    if (response.status !== 200) throw new Error(`publish answered ${response.status}: ${body}`);
    return JSON.parse(body);
  }

  /** Logs `user` out through the chat's `/api/logout`; resolves with how many sockets closed. */
  async logout(user) {
    const response = await fetch(`${this.base}/api/logout`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ user }),
      signal: AbortSignal.timeout(WAIT),
    });
    const body = await response.text();
    if (response.status !== 200) throw new Error(`logout answered ${response.status}: ${body}`);
    return JSON.parse(body).closed;
  }
}

/** Debian's Chromium, headless. Playwright gives it a fresh temporary profile (user-data-dir),
 *  removed when the browser closes; every `newContext()` is a separate visitor on top of it. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: install Debian's (apt-get install chromium); no browser is downloaded`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * A new page with its console errors and uncaught exceptions recorded in `page.problems`
 * (a test may assert there were none).
 */
export async function newPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.problems = [];
  page.on("pageerror", (error) => page.problems.push(`uncaught: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") page.problems.push(`console: ${message.text()}`);
  });
  return page;
}

/**
 * Runs `action` (a playwright wait with a timeout); on failure, throws an error that says
 * `what` did not happen and shows what the page had on screen.
 */
export async function expectThat(what, page, action) {
  try {
    return await action();
  } catch (error) {
    let screen = "";
    try {
      screen = await page.evaluate(() => {
        const text = (selector) => [...document.querySelectorAll(selector)].map((n) => n.innerText.replace(/\s+/g, " ").trim()).join(" | ");
        return [
          `state: ${text("#state")}; banner hidden: ${document.getElementById("banner")?.hidden}`,
          `people: ${text("#people li")}`,
          `messages: ${text("#messages > li")}`,
          `log: ${text("#log li")}`,
        ].join("\n");
      });
    } catch (e) {
      screen = `(page unreadable: ${e.message})`;
    }
    const problems = page.problems?.length ? `\nconsole errors:\n${page.problems.join("\n")}` : "";
    throw new Error(`expected: ${what}\n${error.message.split("\n")[0]}\non screen:\n${screen}${problems}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The chat page

/**
 * Opens the chat at `/?room=ROOM` in a new page of `context` and waits until it is online there
 * as `nick`. A first visit fills in the welcome form; a returning visitor (another tab of the
 * same context) goes straight to the room with the nickname it chose before.
 */
export async function joinChat(context, base, nick, room) {
  const page = await newPage(context);
  await page.goto(`${base}/?room=${encodeURIComponent(room)}`);
  await expectThat("the welcome form or the chat", page, () =>
    page.locator("#welcome:visible, #app:visible").first().waitFor({ timeout: WAIT }));
  if (await page.locator("#welcome").isVisible()) {
    await page.fill("#nick", nick);
    assert.equal(await page.inputValue("#room"), room, "the room in the address fills the form");
    await page.click("#join");
  }
  await waitOnline(page, `${nick}'s page online in ${room}`);
  assert.equal(await page.textContent("#me"), nick);
  assert.equal(await page.textContent("#room-title"), `# ${room}`);
  return page;
}

export async function waitOnline(page, what = "the page online") {
  await expectThat(what, page, () =>
    page.locator('#state[data-state="open"]').waitFor({ timeout: WAIT }));
}

/** Types `text` in the composer (to the room, or privately to `privateTo`) and sends it. */
export async function say(page, text, privateTo = "") {
  if ((await page.inputValue("#to")) !== privateTo) {
    await expectThat(`${privateTo || "the room"} offered as a recipient`, page, () =>
      page.locator(`#to option[value="${privateTo}"]`).waitFor({ state: "attached", timeout: WAIT }));
    await page.selectOption("#to", privateTo);
  }
  await page.fill("#text", text);
  await page.click("#send");
}

/** Waits for a chat line whose text is exactly `text` (and, if given, from `user`). */
export async function seeLine(page, text, { user, private: isPrivate } = {}, what = "") {
  const lines = page.locator("#messages .msg").filter({
    has: page.locator(".text", { hasText: new RegExp(`^${escapeRegExp(text)}$`) }),
  });
  const line = user === undefined ? lines : lines.filter({ has: page.locator(".author", { hasText: new RegExp(`^${escapeRegExp(user)}$`) }) });
  await expectThat(what || `the line ${JSON.stringify(text)}`, page, () => line.first().waitFor({ timeout: WAIT }));
  if (isPrivate !== undefined) {
    const marked = await line.first().evaluate((node) => node.classList.contains("private"));
    if (marked !== isPrivate) throw new Error(`the line ${JSON.stringify(text)} is ${marked ? "" : "not "}marked private`);
  }
  return line.first();
}

/** The texts of the chat lines on the page, in order. */
export function lineTexts(page) {
  return page.$$eval("#messages .msg .text", (nodes) => nodes.map((n) => n.textContent));
}

/** Waits until the presence list shows exactly `names` (any order). */
export async function seePeople(page, names, what = "") {
  const want = [...names].sort();
  await expectThat(what || `the people list to be ${want.join(", ")}`, page, () =>
    page.waitForFunction(
      (expected) => {
        const shown = [...document.querySelectorAll("#people li")].map((li) => li.dataset.user).sort();
        return JSON.stringify(shown) === JSON.stringify(expected);
      },
      want,
      { timeout: WAIT },
    ));
}

export function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Starts the chat example on a free port and a browser: `{ server, base, browser }`. */
/** A free TCP port of 127.0.0.1 (free when asked; the caller binds it at once). */
async function freePort() {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Answers whether a Redis answers PING on `port`. */
async function redisAnswers(port) {
  const { connect } = await import("node:net");
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    const done = (answer) => { socket.destroy(); resolve(answer); };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(String(data).startsWith("+PONG")));
  });
}

/**
 * A `redis-server` of its own on a free port, without persistence, for the cluster tests;
 * `stop()` kills it. Fails with what to install when redis-server is missing.
 */
export async function startRedis() {
  const port = await freePort();
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const failed = new Promise((_, reject) => {
    child.once("error", (e) => reject(new Error(`cannot start redis-server (${e.message}): apt-get install redis-server`)));
    child.once("exit", (code) => reject(new Error(`redis-server exited (${code}) before answering`)));
  });
  const ready = (async () => {
    const deadline = Date.now() + WAIT;
    while (!(await redisAnswers(port))) {
      if (Date.now() > deadline) throw new Error(`redis-server did not answer PING within ${WAIT} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  await Promise.race([ready, failed]);
  failed.catch(() => {}); // it exits when the test kills it
  return {
    url: `redis://127.0.0.1:${port}`,
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}

export async function startChat() {
  const server = new ChatServer();
  const base = await server.start(0);
  const browser = await launchBrowser();
  return { server, base, browser };
}

/** Closes the browser and stops the server (killing it if it does not stop by itself). */
export async function stopChat(server, browser) {
  await browser?.close();
  try {
    await server?.stop();
  } finally {
    server?.kill();
  }
}
