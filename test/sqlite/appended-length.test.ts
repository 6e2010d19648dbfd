/**
 * task_steps_length (migration 0004): the total length of a task's appended steps, kept so an
 * append checks the document budget without reading the steps before it. Upgrading a file
 * made before it counts the steps already appended; a rewritten document drops the total.
 */
import { describe, expect, it } from "vitest";
import { MIGRATION_TABLE } from "../../src/backend/sqlite/tables.js";
import { openRegistry } from "../../src/open.js";
import { tempDbPath, withDb } from "../support/backends.js";
import { stepRecord } from "../support/crux.js";

interface Totals {
  readonly total: number | undefined;
  readonly steps: readonly string[];
}

function totals(file: string, id: string): Totals {
  return withDb(file, (db) => ({
    total: (
      db.prepare("select length from task_steps_length where task_id = ?").get(id) as
        | { length: number }
        | undefined
    )?.length,
    steps: (
      db.prepare("select data from task_steps where task_id = ? order by ordinal").all(id) as {
        data: string;
      }[]
    ).map((row) => row.data),
  }));
}

const units = (steps: readonly string[]) => steps.reduce((sum, s) => sum + s.length + 1, 0);

describe("the appended steps' total length", () => {
  it("is kept on append, counted from the stored steps on upgrade, and dropped on rewrite", async () => {
    const file = tempDbPath();
    let reg = await openRegistry(file);
    const id = await reg.submit("job", null);
    const token = (await reg.claim("job", { owner: "w" }))?.lease?.token as string;
    await reg.recordStep(id, token, 0, stepRecord("a", 1n, "é€😀"));
    await reg.recordStep(id, token, 1, stepRecord("b", 2n, "plain"));
    const kept = totals(file, id);
    expect(kept.steps).toHaveLength(2);
    expect(kept.total).toBe(units(kept.steps));
    await reg.close();

    // The file as it was before the migration: its table and its record gone.
    withDb(file, (db) => {
      db.exec("drop table task_steps_length");
      // It and every later migration: they run again, in order (each is safe to rerun here).
      db.prepare(`delete from ${MIGRATION_TABLE} where name >= ?`).run("0004_appended_length");
    });
    reg = await openRegistry(file);
    const upgraded = totals(file, id);
    // UTF-8 bytes: never fewer than the UTF-16 units, so the budget still holds.
    const bytes = upgraded.steps.reduce((sum, s) => sum + Buffer.byteLength(s) + 1, 0);
    expect(upgraded.total).toBe(bytes);
    expect(bytes).toBeGreaterThan(units(upgraded.steps));

    await reg.recordStep(id, token, 2, stepRecord("c", 3n, "more"));
    const appended = totals(file, id);
    expect(appended.total).toBe(bytes + (appended.steps[2] as string).length + 1);

    await reg.complete(id, token, "done");
    expect(totals(file, id)).toEqual({ total: undefined, steps: [] });
    await reg.close();
  });
});
