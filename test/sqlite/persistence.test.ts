/**
 * What is written to a SQLite file is read back identically: after close and reopen, after
 * the writing process exits without close(), and after it is SIGKILLed mid-write. Plus
 * `:memory:` and wrapping an application's own better-sqlite3 Database.
 */
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import type { TaskId } from "../../src/ids.js";
import { openRegistry } from "../../src/open.js";
import { TaskRegistry } from "../../src/registry.js";
import { decodeTask, writeTask } from "../../src/wire/codec.js";
import type { Json } from "../../src/wire/json.js";
import type { Crux, Task } from "../../src/wire/schema.js";
import { tempDbPath } from "../support/backends.js";
import { type Exit, killChildren, startScript } from "../support/child.js";
import { makeCrux } from "../support/crux.js";
import {
  checkpointsFor,
  cruxFor,
  I64_MIN,
  inputFor,
  type JournalEntry,
  kindFor,
  type PersistenceWorkerConfig,
  PLANNED_TASKS,
  statusesFor,
  U64_MAX,
} from "./persistence-worker.js";

const WORKER = join(dirname(fileURLToPath(import.meta.url)), "persistence-worker.ts");

const tempDirs: string[] = [];
afterEach(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A new database path whose folder is removed after the test. */
function freshDbPath(): string {
  const path = tempDbPath();
  tempDirs.push(dirname(path));
  return path;
}

type MutableTask = { -readonly [K in keyof Task]: Task[K] };

async function codeOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => "resolved",
    (error: unknown) => (error as { code?: unknown }).code,
  );
}

interface RawRow {
  readonly id: string;
  readonly kind: string;
  readonly status: string;
  readonly data: string;
}

/** The rows as stored, read with better-sqlite3 directly, in id order. */
function rawRows(path: string): RawRow[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare("select id, kind, status, data from tasks order by id").all() as RawRow[];
  } finally {
    db.close();
  }
}

function integrityCheck(path: string): unknown {
  const db = new Database(path, { readonly: true });
  try {
    return db.pragma("integrity_check");
  } finally {
    db.close();
  }
}

/** Every stored document decodes to the expected task and re-encodes to the very same bytes. */
function expectRawMatches(path: string, expected: ReadonlyMap<string, Task>): void {
  const rows = rawRows(path);
  expect(rows.map((r) => r.id)).toEqual([...expected.keys()].sort());
  for (const row of rows) {
    const task = decodeTask(row.data);
    expect(task, `stored document of ${row.id}`).toStrictEqual(expected.get(row.id));
    expect(writeTask(task), `re-encoding of ${row.id}`).toBe(row.data);
    expect({ kind: row.kind, status: row.status }).toEqual({
      kind: task.kind,
      status: task.status,
    });
  }
}

/** Apply acknowledged writes, in order, to the expected model. */
function replay(journal: readonly JournalEntry[]): {
  planned: Map<string, MutableTask>;
  extras: string[];
} {
  const byIndex = new Map<number, MutableTask>();
  const extras: string[] = [];
  for (const entry of journal) {
    if (entry.op === "extra") {
      expect(entry.j, "extra writes are journaled in order").toBe(extras.length);
      extras.push(entry.id);
      continue;
    }
    if (entry.op === "submit") {
      byIndex.set(entry.i, {
        id: entry.id as TaskId,
        kind: kindFor(entry.i),
        status: "pending",
        input: inputFor(entry.i),
        checkpoint: null,
        attempts: 0,
      });
      continue;
    }
    const task = byIndex.get(entry.i);
    if (task === undefined)
      throw new Error(`journal writes to task ${entry.i} before submitting it`);
    if (entry.op === "status") task.status = entry.status;
    else {
      task.checkpoint = cruxFor(entry.i, entry.n);
      task.attempts++;
    }
  }
  return { planned: new Map([...byIndex.values()].map((t) => [t.id, t])), extras };
}

function plannedWrites(): number {
  let writes = 0;
  for (let i = 0; i < PLANNED_TASKS; i++) writes += 1 + statusesFor(i).length + checkpointsFor(i);
  return writes;
}

describe("persistence on a SQLite file", () => {
  it("everything written is read back identically after close and reopen", async () => {
    const path = freshDbPath();
    const reg = await openRegistry(path);
    const expected = new Map<string, MutableTask>();

    const submitOne = async (kind: string, input: Json): Promise<MutableTask> => {
      const id = await reg.submit(kind, input);
      const task: MutableTask = {
        id,
        kind,
        status: "pending",
        input,
        checkpoint: null,
        attempts: 0,
      };
      expected.set(id, task);
      return task;
    };
    for (let i = 0; i < PLANNED_TASKS; i++) {
      const task = await submitOne(kindFor(i), inputFor(i));
      for (const status of statusesFor(i)) {
        await reg.updateStatus(task.id, status);
        task.status = status;
      }
      for (let n = 1; n <= checkpointsFor(i); n++) {
        await reg.checkpoint(task.id, cruxFor(i, n));
        task.checkpoint = cruxFor(i, n);
        task.attempts++;
      }
    }
    // Scalars and empty containers as the whole input.
    const scalars: Json[] = [null, "", 0, -1, U64_MAX, I64_MIN, true, 0.5, "🚀", [], {}];
    for (const input of scalars) await submitOne("scalar", input);
    // A status set back to pending, and a checkpoint on a failed task.
    const back = await submitOne("build", { back: true });
    await reg.updateStatus(back.id, "failed");
    await reg.updateStatus(back.id, "pending");
    const failed = await submitOne("deploy", { failed: true });
    await reg.updateStatus(failed.id, "failed");
    const crux: Crux = { ...makeCrux(), agent: "makeCrux" };
    await reg.checkpoint(failed.id, crux);
    failed.status = "failed";
    failed.checkpoint = crux;
    failed.attempts = 1;

    const kinds = [...new Set([...expected.values()].map((t) => t.kind))];
    const readAll = async (r: TaskRegistry) => ({
      tasks: await Promise.all([...expected.keys()].map((id) => r.get(id))),
      checkpoints: await Promise.all([...expected.keys()].map((id) => r.loadCheckpoint(id))),
      pendingAll: await r.pending(""),
      pendingByKind: await Promise.all(kinds.map((kind) => r.pending(kind))),
      pendingFirst3: await r.pending("", { limit: 3 }),
    });
    const before = await readAll(reg);
    await reg.close();

    // Before close, the registry already returns exactly what was written.
    expect(before.tasks).toStrictEqual([...expected.values()]);
    const expectedPending = [...expected.values()]
      .filter((t) => t.status === "pending")
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    expect(before.pendingAll.map((t) => t.id)).toEqual(expectedPending.map((t) => t.id));
    expect(before.pendingAll.length).toBeGreaterThan(3);

    const reopened = await openRegistry(path);
    try {
      const after = await readAll(reopened);
      expect(after.tasks).toStrictEqual([...expected.values()]);
      expect(after.checkpoints).toStrictEqual([...expected.values()].map((t) => t.checkpoint));
      expect(after.pendingAll).toStrictEqual(expectedPending);
      expect(after.pendingAll).toStrictEqual(before.pendingAll);
      expect(after.pendingByKind).toStrictEqual(before.pendingByKind);
      expect(after.pendingFirst3).toStrictEqual(expectedPending.slice(0, 3));
    } finally {
      await reopened.close();
    }

    expectRawMatches(path, expected);
    // u64 values are stored as exact integer literals, not rounded doubles.
    const stored = rawRows(path).map((r) => r.data);
    expect(stored.some((d) => d.includes('"u64max":18446744073709551615,'))).toBe(true);
    expect(stored.some((d) => d.includes('"input_hash":18446744073709551557,'))).toBe(true);
    expect(integrityCheck(path)).toEqual([{ integrity_check: "ok" }]);
  });

  describe("a writer process that dies without close()", () => {
    afterEach(() => killChildren());

    async function runWorker(config: PersistenceWorkerConfig): Promise<Exit> {
      const child = startScript(WORKER, config);
      if (config.mode === "kill") {
        await child.line("written", 60_000);
        // Let it get well into the extra writes, so the kill lands on a busy writer.
        const deadline = Date.now() + 5_000;
        while (Date.now() < deadline && countExtras(config.journalPath) < 25) await sleep(10);
        child.process.kill("SIGKILL");
      }
      return child.exited;
    }

    function readJournal(path: string): JournalEntry[] {
      if (!existsSync(path)) return [];
      return readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as JournalEntry);
    }

    function countExtras(path: string): number {
      return readJournal(path).filter((e) => e.op === "extra").length;
    }

    const cases = [
      { mode: "exit", durability: undefined },
      { mode: "kill", durability: undefined },
      { mode: "exit", durability: "normal" },
      { mode: "kill", durability: "normal" },
    ] as const;

    it.each(cases)(
      "$mode, durability $durability: every acknowledged write is there on reopen",
      { timeout: 60_000 },
      async ({ mode, durability }) => {
        const path = freshDbPath();
        const journalPath = `${path}.journal`;
        const result = await runWorker({
          path,
          mode,
          journalPath,
          ...(durability === undefined ? {} : { durability }),
        });
        if (mode === "exit") {
          expect(result, result.stderr).toMatchObject({ code: 0, signal: null });
        } else {
          expect(result, result.stderr).toMatchObject({ code: null, signal: "SIGKILL" });
        }
        // The process ended without checkpointing its WAL: recovery has work to do.
        expect(existsSync(`${path}-wal`)).toBe(true);
        expect(statSync(`${path}-wal`).size).toBeGreaterThan(0);

        const journal = readJournal(journalPath);
        const { planned, extras } = replay(journal);
        expect(journal.length - extras.length, "all planned writes were acknowledged").toBe(
          plannedWrites(),
        );
        if (mode === "kill") expect(extras.length).toBeGreaterThan(0);

        let storedExtraCount = 0;
        const reg = await openRegistry(path);
        try {
          for (const [id, task] of planned) {
            expect(await reg.get(id), `task ${id}`).toStrictEqual(task);
          }
          const storedExtras = await reg.pending("extra");
          // Every acknowledged extra is there; at most the one in flight at the kill too.
          expect(storedExtras.slice(0, extras.length).map((t) => t.id)).toEqual(extras);
          expect(storedExtras.length - extras.length).toBeGreaterThanOrEqual(0);
          expect(storedExtras.length - extras.length).toBeLessThanOrEqual(1);
          for (const [j, task] of storedExtras.entries()) expect(task.input).toEqual({ j });
          storedExtraCount = storedExtras.length;
        } finally {
          await reg.close();
        }
        // Nothing else was stored.
        expect(rawRows(path)).toHaveLength(planned.size + storedExtraCount);
        expect(integrityCheck(path)).toEqual([{ integrity_check: "ok" }]);
      },
    );
  });

  it("`:memory:` registries work and are private to their connection", async () => {
    const a = await openRegistry(":memory:");
    const b = await openRegistry(":memory:");
    try {
      const id = await a.submit("build", { big: U64_MAX });
      await a.updateStatus(id, "running");
      const crux = cruxFor(0, 1);
      await a.checkpoint(id, crux);
      expect(await a.get(id)).toStrictEqual({
        id,
        kind: "build",
        status: "running",
        input: { big: U64_MAX },
        checkpoint: crux,
        attempts: 1,
      });
      const pendingId = await a.submit("build", null);
      expect((await a.pending("build")).map((t) => t.id)).toEqual([pendingId]);
      expect(await codeOf(b.get(id))).toBe("NOT_FOUND");
      expect(await b.pending("")).toEqual([]);
      await a.close();
      expect(await codeOf(a.get(id))).toBe("CLOSED");
      expect(await codeOf(a.submit("build", null))).toBe("CLOSED");
    } finally {
      await a.close();
      await b.close();
    }
    expect(existsSync(":memory:")).toBe(false);
  });

  describe("wrapping the application's own better-sqlite3 Database", () => {
    it("works on a file, and close() leaves the Database open and the app's data alone", async () => {
      const path = freshDbPath();
      const db = new Database(path);
      try {
        db.exec("create table app_things (name text not null)");
        db.prepare("insert into app_things (name) values (?)").run("mine");

        const reg = new TaskRegistry(await SqliteBackend.open(db));
        const id = await reg.submit("build", { input: U64_MAX });
        await reg.updateStatus(id, "done");
        await reg.checkpoint(id, cruxFor(2, 1));
        const written = await reg.get(id);
        await reg.close();

        expect(db.open).toBe(true);
        expect(await codeOf(reg.get(id))).toBe("CLOSED");
        // The app's connection still works, on its own table and on the registry's.
        expect(db.prepare("select name from app_things").all()).toEqual([{ name: "mine" }]);
        const row = db.prepare("select data from tasks where id = ?").get(id) as { data: string };
        expect(decodeTask(row.data)).toStrictEqual(written);
        db.prepare("insert into app_things (name) values (?)").run("still writable");

        // Opening the same Database again finds the migrated schema and the task.
        const again = new TaskRegistry(await SqliteBackend.open(db));
        expect(await again.get(id)).toStrictEqual(written);
        await again.close();
        expect(db.open).toBe(true);
      } finally {
        db.close();
      }

      // The writes went to the file: a fresh openRegistry sees them.
      const reopened = await openRegistry(path);
      try {
        const tasks = await reopened.pending("");
        expect(tasks).toEqual([]);
        const [row] = rawRows(path);
        expect(row).toBeDefined();
        const stored = await reopened.get(row?.id as string);
        expect(stored).toMatchObject({ kind: "build", status: "done", attempts: 1 });
        expect(stored.checkpoint).toStrictEqual(cruxFor(2, 1));
      } finally {
        await reopened.close();
      }
    });

    it("works on an in-memory Database", async () => {
      const db = new Database(":memory:");
      try {
        const reg = new TaskRegistry(await SqliteBackend.open(db));
        const id = await reg.submit("build", "x");
        await reg.close();
        expect(db.open).toBe(true);
        const row = db.prepare("select kind, status from tasks where id = ?").get(id);
        expect(row).toEqual({ kind: "build", status: "pending" });
      } finally {
        db.close();
      }
    });
  });
});
