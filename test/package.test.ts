/**
 * The package as a user installs it. npm installs it from git the way it installs any git
 * dependency (clone, install its devDependencies, run `prepare`, pack), into a fresh project
 * that type-checks it under `strict` without skipLibCheck and runs it from ESM and from
 * CommonJS; then from a folder (linked, built there by `prepare`); attw checks the packed
 * types. The working tree, committed into a scratch repo, is what gets installed, so this
 * tests the code as it stands, not the last commit.
 */
import { execFileSync, spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TSC = join(ROOT, "node_modules/typescript/bin/tsc");

const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "nodenext",
    strict: true,
    skipLibCheck: false,
    types: ["node"],
    outDir: "out",
  },
};

const CONSUMER: Record<string, string> = {
  "package.json": JSON.stringify({ name: "consumer", private: true, type: "module" }),
  "tsconfig.json": JSON.stringify({ ...TSCONFIG, files: ["esm.ts", "cjs.cts"] }),
  "esm.ts": `
import { openRegistry, type Task } from "cruxx-registry";

const registry = await openRegistry("esm.db");
const id = await registry.submit("greet", { name: "esm" });
const worker = registry.work<{ name: string }>("greet", async (_task, ctx) => {
  const greeting = await ctx.step("greet", () => \`hello \${ctx.input.name}\`);
  return { greeting };
});
await new Promise((resolve) => registry.on("completed", resolve));
await worker.stop();
const task: Task = await registry.get(id);
console.log(task.status, JSON.stringify(task.checkpoint?.value));
await registry.close();
`,
  "cjs.cts": `
import { hasErrorCode, openRegistry } from "cruxx-registry";

async function main(): Promise<void> {
  const registry = await openRegistry(":memory:");
  const id = await registry.submit("greet", { name: "cjs" });
  const claimed = await registry.claim("greet", { owner: "cjs" });
  if (claimed === null) throw new Error("nothing to claim");
  await registry.complete(id, claimed.lease.token, { greeting: "hello cjs" });
  const task = await registry.get(id);
  console.log(typeof require, task.status, JSON.stringify(task.checkpoint?.value));
  await registry.get("task_01ARZ3NDEKTSV4RRFFQ69G5FAV").catch((e) => console.log(hasErrorCode(e, "NOT_FOUND")));
  await registry.close();
}
void main();
`,
  // Checked only once @types/better-sqlite3 is installed, as an application that has its
  // own better-sqlite3 Database would have it.
  "tsconfig.own.json": JSON.stringify({ ...TSCONFIG, files: ["own.ts"] }),
  "own.ts": `
import Database from "better-sqlite3";
import { SqliteBackend, TaskRegistry } from "cruxx-registry";

const db = new Database(":memory:");
const registry = new TaskRegistry(await SqliteBackend.open(db));
const id = await registry.submit("own", { shared: true });
console.log((await registry.get(id)).status, db.open);
await registry.close();
db.close();
`,
};

let work: string;
let repo: string;
let consumer: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "cruxx-install-"));
  const prebuilds = prebuiltBetterSqlite3(join(work, "prebuilds"));
  repo = snapshotRepository(join(work, "repo"));
  consumer = join(work, "consumer");
  mkdirSync(consumer);
  for (const [name, text] of Object.entries(CONSUMER)) writeFileSync(join(consumer, name), text);
  npm(
    consumer,
    [
      "install",
      `git+${pathToFileURL(repo).href}`,
      `@types/node@${installedVersion("@types/node")}`,
    ],
    prebuilds,
  );
}, 300_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

it("installs from git with dist built by prepare, the LICENSE shipped, and no source maps", () => {
  const installed = join(consumer, "node_modules/cruxx-registry");
  expect(existsSync(join(installed, "dist/src/index.js"))).toBe(true);
  expect(existsSync(join(installed, "dist/src/index.d.ts"))).toBe(true);
  expect(readFileSync(join(installed, "LICENSE"), "utf8")).toMatch(/^MIT License/);
  const files = readdirSync(installed, { recursive: true, encoding: "utf8" });
  expect(files.filter((file) => file.endsWith(".map"))).toEqual([]);
});

it("type-checks under strict without skipLibCheck, with none of the package's devDependencies", () => {
  // What a published .d.ts imports from a devDependency fails here: the consumer lacks it.
  expect(existsSync(join(consumer, "node_modules/@types/better-sqlite3"))).toBe(false);
  expect(node(consumer, [TSC, "-p", "tsconfig.json"])).toBe("");
});

it("runs from an ESM module", () => {
  expect(node(consumer, ["out/esm.js"])).toBe('done {"Ok":{"greeting":"hello esm"}}\n');
});

it("runs from CommonJS: require() loads it", () => {
  expect(node(consumer, ["out/cjs.cjs"])).toBe(
    'function done {"Ok":{"greeting":"hello cjs"}}\ntrue\n',
  );
});

it("takes the application's own better-sqlite3 Database, typed by its @types", () => {
  npm(consumer, ["install", `@types/better-sqlite3@${installedVersion("@types/better-sqlite3")}`]);
  expect(node(consumer, [TSC, "-p", "tsconfig.own.json"])).toBe("");
  expect(node(consumer, ["out/own.js"])).toBe("pending true\n");
});

it("installs from a folder whose dependencies are installed, built there by prepare", {
  timeout: 120_000,
}, () => {
  // The checkout as a user has it after `npm install` in it, except dist/, which prepare builds.
  symlinkSync(join(ROOT, "node_modules"), join(repo, "node_modules"));
  const project = join(work, "folder-consumer");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), CONSUMER["package.json"] ?? "");
  npm(project, ["install", repo]);
  expect(realpathSync(join(project, "node_modules/cruxx-registry"))).toBe(realpathSync(repo));
  const script = `
    import { openRegistry } from "cruxx-registry";
    const registry = await openRegistry(":memory:");
    console.log((await registry.get(await registry.submit("folder", 1))).status);
    await registry.close();`;
  expect(node(project, ["--input-type=module", "-e", script])).toBe("pending\n");
});

it("attw finds no problem in the packed package but the one the README explains", () => {
  // The folder that prepare built above, packed as \`npm publish\` would pack it.
  const [packed] = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", work], {
      cwd: repo,
      encoding: "utf8",
    }),
  ) as { filename: string }[];
  const attw = join(ROOT, "node_modules/@arethetypeswrong/cli/dist/index.js");
  const tarball = join(work, packed?.filename ?? "");
  // An ESM-only package: node16's CommonJS resolution has no require(esm). See README.
  node(work, [attw, tarball, "--ignore-rules", "cjs-resolves-to-esm"]);
});

/**
 * Run Node in `cwd`; its stdout, after asserting it exited 0 and printed nothing else (Node
 * 20.19 may still call require(esm) experimental).
 */
function node(cwd: string, args: string[]): string {
  const result = spawnSync(process.execPath, args, { cwd, encoding: "utf8" });
  const warnings = /ExperimentalWarning|--trace-warnings/;
  const stderr = result.stderr.split("\n").filter((line) => line !== "" && !warnings.test(line));
  expect(stderr).toEqual([]);
  expect(result.status, result.stdout).toBe(0);
  return result.stdout;
}

function npm(cwd: string, args: string[], prebuilds?: string): void {
  const env = { ...process.env };
  // better-sqlite3's install looks for its prebuilt binary here before downloading one.
  if (prebuilds) env.npm_config_better_sqlite3_local_prebuilds = prebuilds;
  execFileSync("npm", [...args, "--prefer-offline", "--no-audit", "--no-fund"], {
    cwd,
    env,
    stdio: "pipe",
  });
}

/**
 * better-sqlite3 has no prebuilt binary reachable from here, and compiling it takes minutes:
 * pack the one this project already compiled under the name its installer looks for.
 */
function prebuiltBetterSqlite3(dir: string): string {
  const driver = join(ROOT, "node_modules/better-sqlite3");
  const { header } = process.report.getReport() as { header: { glibcVersionRuntime?: string } };
  const libc = process.platform === "linux" && !header.glibcVersionRuntime ? "musl" : "";
  const name = `better-sqlite3-v${installedVersion("better-sqlite3")}-node-v${process.versions.modules}-${process.platform}${libc}-${process.arch}.tar.gz`;
  mkdirSync(dir, { recursive: true });
  execFileSync("tar", ["-czf", join(dir, name), "-C", driver, "build/Release/better_sqlite3.node"]);
  return dir;
}

/** The working tree's files (tracked, and new ones not ignored), committed into a new repo. */
function snapshotRepository(repo: string): string {
  const listed = execFileSync("git", ["ls-files", "-z", "-c", "-o", "--exclude-standard"], {
    cwd: ROOT,
    encoding: "utf8",
  });
  // A worktree may link node_modules in; git does not count a link as an ignored folder.
  const files = listed
    .split("\0")
    .filter((file) => file !== "" && file !== "node_modules" && existsSync(join(ROOT, file)));
  for (const file of files) cpSync(join(ROOT, file), join(repo, file));
  const identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"];
  const git = (...args: string[]) =>
    execFileSync("git", [...identity, "-c", "commit.gpgsign=false", ...args], {
      cwd: repo,
      stdio: "pipe",
    });
  git("init", "--quiet");
  git("add", "--all");
  git("commit", "--quiet", "--message", "snapshot of the working tree");
  return repo;
}

function installedVersion(name: string): string {
  const manifest = join(ROOT, "node_modules", name, "package.json");
  return (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
}
