// The npm package `wshub-client` (client/package.json): what `npm pack` puts in it, and that an
// application can import it by name. Needs npm (no registry access: everything is local).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

import { WAIT_MS } from "./support.mjs";

const CLIENT = fileURLToPath(new URL("..", import.meta.url));
const EXPECTED_FILES = ["README.md", "package.json", "wshub.d.ts", "wshub.js"];

// npm may be slow to start on a cold cache; a pack of four files takes well under this.
const NPM_MS = 3 * WAIT_MS;

// No update check and no funding or audit requests: this test must not need the network.
const NPM_ENV = {
  ...process.env,
  npm_config_update_notifier: "false",
  npm_config_fund: "false",
  npm_config_audit: "false",
};

/** Runs a command; resolves with its stdout, or fails saying what it was for and what it said. */
function run(command, args, options, what, ms = NPM_MS) {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: ms, maxBuffer: 16 << 20, ...options }, (error, stdout, stderr) => {
      if (error === null) {
        resolve(stdout);
      } else if (error.code === "ENOENT") {
        reject(
          new Error(
            `${what}: '${command}' is not installed. The client's package test needs npm ` +
              "(Debian: apt-get install npm; or Node.js from nodejs.org, which includes it)",
          ),
        );
      } else if (error.killed) {
        reject(new Error(`${what}: '${command} ${args.join(" ")}' took over ${ms} ms\n${stderr}`));
      } else {
        reject(new Error(`${what}: '${command} ${args.join(" ")}' failed: ${error.message}\n${stderr}`));
      }
    });
  });
}

let scratch;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "wshub-client-package-"));
});

after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test("package.json: an ES module package without dependencies, its types beside it", async () => {
  const manifest = JSON.parse(await readFile(join(CLIENT, "package.json"), "utf8"));
  assert.equal(manifest.name, "wshub-client");
  assert.equal(manifest.version, "0.1.0");
  assert.equal(manifest.type, "module");
  assert.equal(manifest.license, "MIT OR Apache-2.0");
  assert.equal(manifest.sideEffects, false);
  assert.deepEqual(manifest.exports, { ".": { types: "./wshub.d.ts", default: "./wshub.js" } });
  for (const field of ["dependencies", "peerDependencies", "optionalDependencies", "scripts"]) {
    assert.equal(manifest[field], undefined, `package.json has ${field}`);
  }
});

test("npm pack: exactly the module, its types, the README and package.json; no tests", async () => {
  const out = await run("npm", ["pack", "--dry-run", "--json"], { cwd: CLIENT, env: NPM_ENV }, "npm pack --dry-run");
  const [packed] = JSON.parse(out);
  assert.equal(packed.name, "wshub-client");
  assert.deepEqual(packed.files.map((f) => f.path).sort(), EXPECTED_FILES);
});

test("the packed package imports by name, and is the file the hub serves", async () => {
  const out = await run(
    "npm",
    ["pack", "--json", "--pack-destination", scratch],
    { cwd: CLIENT, env: NPM_ENV },
    "npm pack",
  );
  const [{ filename }] = JSON.parse(out);
  // An application with the package installed, as `npm install wshub-client` would leave it.
  const app = join(scratch, "app");
  const modules = join(app, "node_modules");
  await mkdir(modules, { recursive: true });
  await run("tar", ["-xzf", join(scratch, filename), "-C", modules], {}, "unpacking the tarball", WAIT_MS);
  await rename(join(modules, "package"), join(modules, "wshub-client"));

  // Resolved from the application's directory, as its own `import` would be.
  const script = `
    // import.meta.resolve is unflagged from Node 20.6.
    const url = typeof import.meta.resolve === "function" ? import.meta.resolve("wshub-client") : null;
    const module = await import("wshub-client");
    console.log(JSON.stringify({ url, exports: Object.keys(module).sort() }));
  `;
  const result = JSON.parse(
    await run(process.execPath, ["--input-type=module", "-e", script], { cwd: app }, "importing wshub-client", WAIT_MS),
  );
  if (result.url !== null) {
    assert.equal(result.url, pathToFileURL(join(modules, "wshub-client", "wshub.js")).href);
  }
  assert.deepEqual(result.exports, [
    "WebConnectionMessage",
    "WebConnectionWebSocket",
    "WsHub",
    "WsHubError",
    "to",
  ]);
  // The layer serves client/wshub.js; the package must hold the same bytes.
  for (const file of ["wshub.js", "wshub.d.ts"]) {
    assert.ok(
      (await readFile(join(modules, "wshub-client", file))).equals(await readFile(join(CLIENT, file))),
      `the packed ${file} differs from client/${file}`,
    );
  }
});
