/** WAL checkpoints move to a background thread once a file is written often. */
import { statSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { expect, it } from "vitest";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import { TaskRegistry } from "../../src/registry.js";
import { tempDbPath } from "../support/backends.js";

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(10);
  }
}

it("a busy file gets a checkpoint thread: the WAL stays bounded and settings come back", {
  timeout: 60_000,
}, async () => {
  const path = tempDbPath();
  const db = new Database(path);
  db.pragma("wal_autocheckpoint = 777"); // the application's own setting
  const registry = new TaskRegistry(await SqliteBackend.open(db, { durability: "normal" }));
  const autocheckpoint = () => db.pragma("wal_autocheckpoint", { simple: true });

  const id = await registry.submit("k", null);
  const big = "x".repeat(16 * 1024);
  // Past 200 commits the connection hands its checkpoints to the thread.
  for (let i = 0; i < 210; i++) await registry.submit("k", { i });
  await until(() => autocheckpoint() === 0);

  // 1,500 rewrites of a 16 KB task: 24 MB of WAL frames without checkpoints.
  for (let i = 0; i < 1500; i++) {
    await registry.checkpoint(id, {
      id: `cruxx_01JDQ8ZB1C2D3E4F5G6H7J8K9N` as never,
      agent: big,
      value: { Ok: i },
      steps: [],
      children: [],
      started_at: "2026-01-02T03:04:05Z",
      finished_at: null,
    });
    if (i % 50 === 0) await sleep(5); // let the thread's timer run between bursts
  }
  expect(statSync(`${path}-wal`).size).toBeLessThan(12 * 1024 * 1024);
  expect((await registry.loadCheckpoint(id))?.value).toEqual({ Ok: 1499 });
  expect(db.pragma("integrity_check", { simple: true })).toBe("ok");

  await registry.close();
  expect(db.open).toBe(true);
  expect(autocheckpoint()).toBe(777);
  db.close();
});
