/**
 * `npm run demo`: one process creates a registry file, submits and checkpoints tasks, and
 * exits; a second process reopens the file and shows that everything is intact.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  newCruxId,
  openRegistry,
  SqliteBackend,
  stringifyJson,
  TaskRegistry,
} from "../src/index.js";

const [role, path] = process.argv.slice(2);

if (role === "write" && path) {
  const registry = await openRegistry(path);
  const build = await registry.submit("build", { repo: "cruxx", flags: ["--release"] });
  const analyze = await registry.submit("analyze", { doc: "spec.md", hash: 18446744073709551557n });
  await registry.submit("deploy", { env: "staging" });
  await registry.updateStatus(analyze, "running");
  const now = new Date().toISOString();
  await registry.checkpoint(analyze, {
    id: newCruxId(),
    agent: "planner",
    value: { Ok: null },
    steps: [
      {
        name: "fetch",
        kind: "plain",
        status: "ok",
        confidence: 1,
        started_at: now,
        duration_ms: 5,
        input_hash: 2124207233303399209n,
        content_hash: null,
        output: "data",
        error: null,
        attempt: 1,
        events: [],
        metadata: {},
      },
    ],
    children: [],
    started_at: now,
    finished_at: null,
  });
  await registry.updateStatus(build, "done");
  console.log(`[writer pid ${process.pid}] wrote 3 tasks and 1 checkpoint to ${path}; exiting`);
  process.exit(0); // no close(): every resolved write is already on disk
} else if (role === "read" && path) {
  const backend = await SqliteBackend.open(path);
  const registry = new TaskRegistry(backend);
  console.log(`[reader pid ${process.pid}] reopened ${path}`);
  for (const id of await backend.list("")) {
    const task = await registry.get(id);
    const checkpoint = task.checkpoint
      ? `checkpoint ${task.checkpoint.agent}: ${task.checkpoint.steps.map((s) => `${s.name}#${s.input_hash}`).join(", ")}`
      : "no checkpoint";
    console.log(
      `  ${task.id}  ${task.kind.padEnd(8)} ${task.status.padEnd(8)} attempts=${task.attempts}  ${checkpoint}`,
    );
    console.log(`    input ${stringifyJson(task.input)}`);
  }
  console.log(`  pending now: ${(await registry.pending("")).map((t) => t.kind).join(", ")}`);
  await registry.close();
} else {
  const file = join(mkdtempSync(join(tmpdir(), "cruxx-demo-")), "registry.db");
  const self = fileURLToPath(import.meta.url);
  for (const step of ["write", "read"]) {
    const result = spawnSync(process.execPath, ["--import", "tsx", self, step, file], {
      stdio: "inherit",
    });
    if (result.status !== 0) process.exit(result.status ?? 1);
  }
}
