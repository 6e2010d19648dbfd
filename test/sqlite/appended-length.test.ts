/**
 * task_steps_length (migration 0004): the total length of a task's appended steps, kept so an
 * append checks the document budget without reading the steps before it. Upgrading a file
 * made before it counts the steps already appended; a rewritten document drops the total.
 */
import { describe, expect, it } from "vitest";
import { newCruxId, newTaskId, type TaskId } from "../../src/ids.js";
import { openRegistry } from "../../src/open.js";
import { writeStep, writeTask } from "../../src/wire/codec.js";
import { tempDbPath, withDb } from "../support/backends.js";
import { makeCrux, stepRecord } from "../support/crux.js";
import { fileBefore } from "../support/migrate.js";

interface Totals {
  readonly total: number | undefined;
  readonly steps: readonly string[];
}

/** Both tables are keyed by the task's seq. */
function totals(file: string, id: string): Totals {
  return withDb(file, (db) => ({
    total: (
      db
        .prepare(
          "select length from task_steps_length where task = (select seq from tasks where id = ?)",
        )
        .get(id) as { length: number } | undefined
    )?.length,
    steps: (
      db
        .prepare(
          "select data from task_steps where task = (select seq from tasks where id = ?) order by ordinal",
        )
        .all(id) as { data: string }[]
    ).map((row) => row.data),
  }));
}

const units = (steps: readonly string[]) => steps.reduce((sum, s) => sum + s.length + 1, 0);

/**
 * A file in the layout before 0004 holding, as that version's registry left it, a running
 * task under a live lease whose run appended two steps (one with characters of 2–4 UTF-8 bytes).
 */
async function fileWithAppendedSteps(): Promise<{ file: string; id: TaskId }> {
  const file = await fileBefore("0004_appended_length");
  const now = Date.now();
  const id = newTaskId(now);
  const started = new Date(now).toISOString();
  const checkpoint = {
    ...{ id: newCruxId(now), agent: "job", value: { Ok: null }, steps: [], children: [] },
    ...{ started_at: started, finished_at: null },
  };
  const data = writeTask({
    id,
    kind: "job",
    status: "running",
    input: null,
    checkpoint,
    attempts: 0,
  });
  withDb(file, (db) => {
    db.prepare(
      `insert into tasks (id, kind, status, data, created_at, updated_at, run_at, runs,
        lease_owner, lease_token, lease_expires_at) values (?, 'job', 'running', ?, ?, ?, ?, 1, 'w', 'old-token', ?)`,
    ).run(id, data, now, now, now, now + 3_600_000);
    const step = db.prepare("insert into task_steps (task_id, ordinal, data) values (?, ?, ?)");
    step.run(id, 0, writeStep(stepRecord("a", 1n, "é€😀"), "$"));
    step.run(id, 1, writeStep(stepRecord("b", 2n, "plain"), "$"));
  });
  return { file, id };
}

describe("the appended steps' total length", () => {
  it("is kept on append, and dropped with the steps when the completion folds them in", async () => {
    const file = tempDbPath();
    const reg = await openRegistry(file);
    const id = await reg.submit("job", null);
    const token = (await reg.claim("job", { owner: "w" }))?.lease?.token as string;
    await reg.recordStep(id, token, 0, stepRecord("a", 1n, "é€😀"));
    await reg.recordStep(id, token, 1, stepRecord("b", 2n, "plain"));
    const kept = totals(file, id);
    expect(kept.steps).toHaveLength(2);
    expect(kept.total).toBe(units(kept.steps));
    // A run that appended steps ends with a whole write: the steps move into the document.
    await reg.complete(id, token, "done");
    expect(totals(file, id)).toEqual({ steps: [], total: undefined });
    expect((await reg.get(id)).checkpoint?.steps.map((s) => s.name)).toEqual(["a", "b"]);
    await reg.close();
  });

  it("is counted from the stored steps on upgrade, and dropped on rewrite", async () => {
    const { file, id } = await fileWithAppendedSteps();
    const reg = await openRegistry(file);
    const upgraded = totals(file, id);
    expect(upgraded.steps).toHaveLength(2);
    // UTF-8 bytes: never fewer than the UTF-16 units, so the budget still holds.
    const bytes = upgraded.steps.reduce((sum, s) => sum + Buffer.byteLength(s) + 1, 0);
    expect(upgraded.total).toBe(bytes);
    expect(bytes).toBeGreaterThan(units(upgraded.steps));

    const token = (await reg.inspect(id)).lease?.token as string;
    await reg.recordStep(id, token, 2, stepRecord("c", 3n, "more"));
    const appended = totals(file, id);
    expect(appended.total).toBe(bytes + (appended.steps[2] as string).length + 1);
    expect((await reg.get(id)).checkpoint?.steps.map((s) => s.name)).toEqual(["a", "b", "c"]);

    // A checkpoint writes the document whole: the steps and their total go with it.
    await reg.checkpoint(id, makeCrux());
    expect(totals(file, id)).toEqual({ total: undefined, steps: [] });
    await reg.close();
  });
});
