/**
 * Migration 0005: a running task without a lease, as the seed's updateStatus("running") left
 * one before it gave a lease, is taken back by the next claim after the upgrade.
 */
import { describe, expect, it } from "vitest";
import { MIGRATION_TABLE } from "../../src/backend/sqlite/tables.js";
import { openRegistry } from "../../src/open.js";
import { tempDbPath, withDb } from "../support/backends.js";

describe("running tasks without a lease, from before updateStatus gave one", () => {
  it("get an expired lease on upgrade, so a claim takes them back", async () => {
    const file = tempDbPath();
    let registry = await openRegistry(file);
    const id = await registry.submit("job", { n: 1 });
    await registry.updateStatus(id, "running");
    await registry.close();

    // The file as an older version left it: running, no lease, and 0005 not yet applied.
    withDb(file, (db) => {
      db.prepare(
        "update tasks set lease_owner = null, lease_token = null, lease_expires_at = null where id = ?",
      ).run(id);
      // It and every later migration: they run again, in order (each is safe to rerun here).
      db.prepare(`delete from ${MIGRATION_TABLE} where name >= ?`).run("0005_lease_for_running");
    });

    registry = await openRegistry(file);
    const claimed = await registry.claim("job", { owner: "w" });
    expect(claimed?.task.id).toBe(id);
    const record = await registry.inspect(id);
    expect(record.lastError).toMatchObject({ kind: "step_failed" });
    expect(JSON.stringify(record.lastError)).toContain("updateStatus");
    await registry.close();
  });
});
