/**
 * Several processes on one SQLite file at once: no lost update, only CONFLICT errors (never
 * BUSY, STORAGE or a raw driver error), every child exits cleanly and the file stays sound.
 * Each child is a real process (contention-worker.ts) with its own connection.
 */
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../migrations/index.js";
import type { TaskId } from "../../src/ids.js";
import { openRegistry } from "../../src/open.js";
import { decodeTask } from "../../src/wire/codec.js";
import { TASK_STATUSES, type TaskStatus } from "../../src/wire/schema.js";
import { tempDbPath } from "../support/backends.js";
import { type Exit, killChildren, startScript } from "../support/child.js";
import type { WorkerConfig, WorkerReport } from "./contention-worker.js";

const WORKER = join(dirname(fileURLToPath(import.meta.url)), "contention-worker.ts");

interface ChildResult extends Exit {
  readonly report: WorkerReport | undefined;
}

interface RunningChild {
  readonly process: ChildProcessWithoutNullStreams;
  /** Resolves when the child prints `ready`. */
  readonly ready: Promise<string>;
  readonly done: Promise<ChildResult>;
}

const tempDirs: string[] = [];

afterEach(() => {
  // A failed or timed-out test must not leave children or files behind.
  killChildren();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A new database path whose folder is removed after the test. */
function freshDbPath(): string {
  const path = tempDbPath();
  tempDirs.push(dirname(path));
  return path;
}

function startWorker(config: WorkerConfig): RunningChild {
  const child = startScript(WORKER, config);
  const ready = child.line("ready", 60_000);
  const done = child.exited.then((exit) => ({ ...exit, report: readReport(config.reportPath) }));
  // Avoid an unhandled rejection when `ready` is not awaited after a clean exit.
  ready.catch(() => undefined);
  return { process: child.process, ready, done };
}

function readReport(path: string): WorkerReport | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as WorkerReport;
  } catch {
    return undefined;
  }
}

/** Start every child, wait until all are ready, release them together, wait for all to exit. */
async function runTogether(configs: readonly WorkerConfig[]): Promise<ChildResult[]> {
  const children = configs.map(startWorker);
  await Promise.all(children.map((c) => c.ready));
  for (const c of children) c.process.stdin.write("go\n");
  const results = await Promise.all(children.map((c) => c.done));
  for (const [i, result] of results.entries()) {
    expect(
      { code: result.code, signal: result.signal },
      `child ${i} exit status; stderr:\n${result.stderr}`,
    ).toEqual({ code: 0, signal: null });
    expect(result.report, `child ${i} wrote no report; stderr:\n${result.stderr}`).toBeDefined();
  }
  return results;
}

function integrityCheck(path: string): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.pragma("integrity_check", { simple: false }) as string[];
  } finally {
    db.close();
  }
}

function expectOnlyConflicts(reports: readonly WorkerReport[]): number {
  let conflicts = 0;
  for (const report of reports) {
    for (const error of report.errors) {
      // Compare the whole record so a failure shows the offending error in full.
      expect(error, `child ${report.child} (${report.durability})`).toEqual({
        op: error.op === "updateStatus" ? "updateStatus" : "checkpoint",
        taskId: error.taskId,
        name: "ConflictError",
        code: "CONFLICT",
        message: `CAS conflict on task ${error.taskId}`,
      });
      conflicts++;
    }
  }
  return conflicts;
}

describe("several processes on one SQLite file", () => {
  it("random checkpoint/updateStatus from 4 processes: no lost update, only CONFLICT errors, file intact", {
    timeout: 90_000,
  }, async () => {
    const started = Date.now();
    const path = freshDbPath();
    const setup = await openRegistry(path);
    const taskIds: TaskId[] = [];
    for (let i = 0; i < 8; i++) taskIds.push(await setup.submit(`kind${i % 3}`, { i }));
    await setup.close();

    const iterations = 250;
    const lanes = 2;
    const durabilities = [undefined, "normal", "normal", undefined] as const;
    const configs: WorkerConfig[] = durabilities.map((durability, child) => ({
      path,
      child,
      ...(durability === undefined ? {} : { durability }),
      mode: "random",
      taskIds,
      iterations,
      lanes,
      seed: 1000 + child,
      barrierBeforeOpen: false,
      reportPath: `${path}.child${child}.json`,
    }));
    const reports = (await runTogether(configs)).map((r) => r.report as WorkerReport);

    // Every operation is accounted for, exactly once.
    for (const report of reports) {
      expect(report.operations).toBe(iterations * lanes);
      const resolved = report.lanes
        .flatMap((lane) => Object.values(lane))
        .reduce((n, s) => n + s.checkpointsResolved + s.statusesResolved, 0);
      expect(resolved + report.errors.length, `child ${report.child}`).toBe(iterations * lanes);
    }
    const conflicts = expectOnlyConflicts(reports);

    const reg = await openRegistry(path);
    try {
      for (const id of taskIds) {
        const laneStats = reports.flatMap((r) => r.lanes.map((lane) => lane[id]));
        const checkpoints = laneStats.reduce((n, s) => n + (s?.checkpointsResolved ?? 0), 0);
        const task = await reg.get(id);
        // No lost update: every resolved checkpoint counted once, none counted twice.
        expect(task.attempts, `attempts of ${id}`).toBe(checkpoints);
        // The last successful CAS on the task was the last success of some lane.
        expect(TASK_STATUSES).toContain(task.status);
        const lastStatuses = new Set<TaskStatus>(
          laneStats.flatMap((s) => (s?.lastStatus ? [s.lastStatus] : [])),
        );
        if (lastStatuses.size === 0) lastStatuses.add("pending");
        expect([...lastStatuses], `status of ${id}`).toContain(task.status);
        const lastAgents = laneStats.flatMap((s) => (s?.lastAgent ? [s.lastAgent] : []));
        if (lastAgents.length === 0) expect(task.checkpoint).toBeNull();
        else expect(lastAgents, `checkpoint agent of ${id}`).toContain(task.checkpoint?.agent);
      }
    } finally {
      await reg.close();
    }

    // The indexed columns agree with the documents, and the file is sound.
    const db = new Database(path, { readonly: true });
    try {
      const rows = db.prepare("select id, kind, status, data from tasks order by id").all() as {
        id: string;
        kind: string;
        status: string;
        data: string;
      }[];
      expect(rows.map((r) => r.id)).toEqual(taskIds);
      for (const row of rows) {
        const task = decodeTask(row.data);
        expect({ id: row.id, kind: row.kind, status: row.status }).toEqual({
          id: task.id,
          kind: task.kind,
          status: task.status,
        });
      }
    } finally {
      db.close();
    }
    expect(integrityCheck(path)).toEqual([{ integrity_check: "ok" }]);

    const operations = reports.reduce((n, r) => n + r.operations, 0);
    console.log(
      `contention: ${operations} operations from ${reports.length} processes, ${conflicts} CONFLICT errors, ` +
        `children ${reports.map((r) => `${r.elapsedMs} ms`).join(" / ")}, total ${Date.now() - started} ms`,
    );
  });

  it("4 processes racing to create and migrate a fresh file all succeed", {
    timeout: 60_000,
  }, async () => {
    const path = freshDbPath();
    const perChild = 5;
    const configs: WorkerConfig[] = [0, 1, 2, 3].map((child) => ({
      path,
      child,
      ...(child % 2 === 0 ? {} : { durability: "normal" as const }),
      mode: "submit",
      taskIds: [],
      iterations: perChild,
      lanes: 1,
      seed: child,
      barrierBeforeOpen: true,
      reportPath: `${path}.child${child}.json`,
    }));
    const reports = (await runTogether(configs)).map((r) => r.report as WorkerReport);
    for (const report of reports) {
      expect(report.errors, `child ${report.child}`).toEqual([]);
      expect(report.submitted).toHaveLength(perChild);
    }

    const reg = await openRegistry(path);
    try {
      for (const report of reports) {
        for (const [i, id] of report.submitted.entries()) {
          const task = await reg.get(id);
          expect(task).toMatchObject({
            kind: `child${report.child}`,
            input: { child: report.child, i },
            attempts: 1,
          });
          expect(task.checkpoint?.agent).toBe(`child${report.child}-task${i}`);
        }
      }
      expect(await reg.pending("")).toHaveLength(4 * perChild);
    } finally {
      await reg.close();
    }

    const db = new Database(path, { readonly: true });
    try {
      const applied = db.prepare("select name from cruxx_migration order by name").all();
      expect(applied).toEqual(Object.keys(MIGRATIONS).map((name) => ({ name })));
    } finally {
      db.close();
    }
    expect(integrityCheck(path)).toEqual([{ integrity_check: "ok" }]);
  });
});
