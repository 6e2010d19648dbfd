/**
 * Migration 0005: a running task without a lease, as the seed's updateStatus("running") left
 * one before it gave a lease, is taken back by the next claim after the upgrade.
 */
import { describe, expect, it } from "vitest";
import { newTaskId } from "../../src/ids.js";
import { openRegistry } from "../../src/open.js";
import { writeTask } from "../../src/wire/codec.js";
import { withDb } from "../support/backends.js";
import { fileBefore } from "../support/migrate.js";

describe("running tasks without a lease, from before updateStatus gave one", () => {
  it("get an expired lease on upgrade, so a claim takes them back", async () => {
    // The file as an older version left it: running, no lease, and 0005 not yet applied.
    const file = await fileBefore("0005_lease_for_running");
    const now = Date.now();
    const id = newTaskId(now);
    const input = { n: 1 };
    const data = writeTask({
      id,
      kind: "job",
      status: "running",
      input,
      checkpoint: null,
      attempts: 0,
    });
    withDb(file, (db) =>
      db
        .prepare(
          "insert into tasks (id, kind, status, data, created_at, updated_at, run_at) values (?, 'job', 'running', ?, ?, ?, ?)",
        )
        .run(id, data, now, now, now),
    );

    const registry = await openRegistry(file);
    const claimed = await registry.claim("job", { owner: "w" });
    expect(claimed?.task.id).toBe(id);
    expect(claimed?.task.input).toEqual(input);
    const record = await registry.inspect(id);
    expect(record.lastError).toMatchObject({ kind: "step_failed" });
    expect(JSON.stringify(record.lastError)).toContain("updateStatus");
    await registry.close();
  });
});
