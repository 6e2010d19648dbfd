/**
 * Migration 0006 (the lean layout) on a file the 0001–0005 layout really wrote:
 * test/fixtures/schema-0005.db, tasks in every state (see make-schema-0005.ts), and what that
 * registry read back from it, schema-0005.expected.json.
 *
 * The first describe checks the migration alone, in SQL: rows, keys, fences, steps, indexes
 * and the plans of the queries the lean layout is built for. The second reads the upgraded
 * file through the registry, and so needs the adapter written for the lean layout.
 */
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../migrations/index.js";
import { MIGRATION_TABLE } from "../../src/backend/sqlite/tables.js";
import { SqliteBackend, type TaskId, TaskRegistry, type TaskStatus } from "../../src/index.js";
import { tempDbPath, withDb } from "../support/backends.js";
import { stepRecord } from "../support/crux.js";
import { migrateFile } from "../support/migrate.js";
import { expectCode, rejection } from "../support/rejection.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures");
const FIXTURE = join(FIXTURES, "schema-0005.db");

interface ExpectedLease {
  readonly owner: string;
  readonly token: string;
  readonly expiresAt: number;
}
interface ExpectedRecord {
  readonly task: { readonly kind: string; readonly status: TaskStatus };
  readonly lease: ExpectedLease | null;
  readonly [field: string]: unknown;
}
type Refused = { readonly error: string };
interface ExpectedTask {
  readonly id: TaskId;
  /** The backend's get(): the document as the registry hands it to the seed, byte for byte. */
  readonly stored: string;
  readonly get: unknown;
  readonly inspect: ExpectedRecord | Refused;
}
interface Expected {
  /** The fixture's clock when it was read back: no lease in it has expired by then. */
  readonly clock: number;
  readonly layout: readonly string[];
  readonly tasks: Record<string, ExpectedTask>;
  readonly list: readonly string[];
  readonly pending: Record<string, unknown>;
  readonly quarantined: unknown;
}

const EXPECTED = JSON.parse(
  readFileSync(join(FIXTURES, "schema-0005.expected.json"), "utf8"),
) as Expected;
const TASKS = EXPECTED.tasks;

function task(name: string): ExpectedTask {
  const found = TASKS[name];
  if (found === undefined) throw new Error(`no task ${name} in the fixture`);
  return found;
}

function record(name: string): ExpectedRecord {
  const { inspect } = task(name);
  if ("error" in inspect) throw new Error(`task ${name} does not inspect`);
  return inspect;
}

/** A copy of the fixture in a new temporary folder. */
function fixtureCopy(): string {
  const file = tempDbPath();
  copyFileSync(FIXTURE, file);
  return file;
}

type Row = Record<string, unknown>;

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function rows(file: string, query: string): Row[] {
  return withDb(file, (db) => db.prepare(query).all() as Row[]);
}

/** The plan SQLite chooses for `query`, one line per step. */
function plan(db: Database.Database, query: string): string[] {
  const parameters = query.split("?").length - 1;
  return (
    db.prepare(`explain query plan ${query}`).all(...Array(parameters).fill(0)) as {
      detail: string;
    }[]
  ).map((step) => step.detail);
}

describe("migration 0006 on a file of the 0001–0005 layout (SQL only)", () => {
  const before = {
    tasks: rows(FIXTURE, "select * from tasks order by id"),
    steps: rows(FIXTURE, "select * from task_steps order by task_id, ordinal"),
    lengths: rows(FIXTURE, "select * from task_steps_length order by task_id"),
  };
  let file: string;
  beforeAll(async () => {
    file = fixtureCopy();
    await migrateFile(file);
  });

  it("starts from the layout the fixture was written in", () => {
    expect(rows(FIXTURE, `select name from ${MIGRATION_TABLE} order by name`)).toEqual(
      EXPECTED.layout.map((name) => ({ name })),
    );
    expect(before.tasks).toHaveLength(Object.keys(TASKS).length);
    expect(before.steps.length).toBeGreaterThan(0);
  });

  it("records 0006 as applied", () => {
    expect(rows(file, `select name from ${MIGRATION_TABLE} order by name`)).toEqual(
      Object.keys(MIGRATIONS)
        .sort()
        .map((name) => ({ name })),
    );
  });

  it("keeps every column of every task; seq follows id order", () => {
    const after = rows(file, "select * from tasks order by seq");
    expect(after.map((row) => row.id)).toEqual(before.tasks.map((row) => row.id));
    expect(after.map((row) => row.seq)).toEqual(after.map((_, i) => i + 1));
    after.forEach((row, i) => {
      const { lease_token: token, ...old } = before.tasks[i] as Row;
      const { seq: _seq, fence, run_value, run_started_at, run_finished_at, ...kept } = row;
      expect(kept, String(row.id)).toEqual(old);
      // A lease is carried over with token 1; today's documents hold their whole run.
      expect(fence).toBe(token === null ? 0 : 1);
      expect([run_value, run_started_at, run_finished_at]).toEqual([null, null, null]);
    });
  });

  it("fences exactly the leases: the running tasks and the one quarantined while running", () => {
    const leased = ["runningAppended", "runningInDocument", "runningSeed", "cancelRequested"];
    expect(rows(file, "select id from tasks where fence = 1 order by id")).toEqual(
      [...leased, "quarantinedRunning"].map((name) => ({ id: task(name).id })).sort(byId),
    );
    expect(rows(file, "select count(*) as n from tasks where fence not in (0, 1)")).toEqual([
      { n: 0 },
    ]);
  });

  it("keys appended steps and their lengths by seq", () => {
    const seqOf = new Map(
      rows(file, "select seq, id from tasks").map((row) => [row.id, row.seq] as const),
    );
    expect(rows(file, "select * from task_steps order by task, ordinal")).toEqual(
      before.steps.map(({ task_id, ...step }) => ({ task: seqOf.get(task_id), ...step })),
    );
    expect(rows(file, "select * from task_steps_length order by task")).toEqual(
      before.lengths.map(({ task_id, ...length }) => ({ task: seqOf.get(task_id), ...length })),
    );
    expect(new Set(rows(file, "select task from task_steps").map((row) => row.task))).toEqual(
      new Set([seqOf.get(task("runningAppended").id), seqOf.get(task("runningInDocument").id)]),
    );
  });

  it("has the lean tables and exactly the kept indexes, nothing left of the old ones", () => {
    const objects = rows(
      file,
      "select type, name, tbl_name as tbl from sqlite_master where name not like 'sqlite_autoindex%' and tbl_name not like 'cruxx_migration%' order by type, name",
    );
    expect(objects).toEqual([
      { type: "index", name: "tasks_claim_kind", tbl: "tasks" },
      { type: "index", name: "tasks_id", tbl: "tasks" },
      { type: "index", name: "tasks_idempotency_key", tbl: "tasks" },
      { type: "index", name: "tasks_lease_expiry", tbl: "tasks" },
      { type: "index", name: "tasks_pending_kind_id", tbl: "tasks" },
      { type: "index", name: "tasks_quarantined", tbl: "tasks" },
      { type: "table", name: "task_steps", tbl: "task_steps" },
      { type: "table", name: "task_steps_length", tbl: "task_steps_length" },
      { type: "table", name: "tasks", tbl: "tasks" },
    ]);
    // Each kept index as its migration defined it.
    const definitions = Object.fromEntries(
      rows(file, "select name, sql from sqlite_master where type = 'index' and sql is not null")
        .filter((row) => String(row.name).startsWith("tasks_"))
        .map((row) => [row.name, row.sql]),
    );
    const original = Object.fromEntries(
      rows(FIXTURE, "select name, sql from sqlite_master where type = 'index' and sql is not null")
        .filter((row) => String(row.name) in definitions)
        .map((row) => [row.name, row.sql]),
    );
    expect(definitions).toEqual({
      ...original,
      tasks_id: 'CREATE UNIQUE INDEX "tasks_id" on "tasks" ("id")',
    });
    // seq is the rowid, and `data` the last column.
    const columns = withDb(
      file,
      (db) => db.pragma("table_info(tasks)") as { name: string; pk: number; type: string }[],
    );
    expect(columns.find((c) => c.pk === 1)).toMatchObject({ name: "seq", type: "INTEGER" });
    expect(columns.at(-1)?.name).toBe("data");
    expect(columns.map((c) => c.name)).not.toContain("lease_token");
  });

  it("leaves a sound file", () => {
    withDb(file, (db) => {
      expect(db.pragma("integrity_check")).toEqual([{ integrity_check: "ok" }]);
      expect(db.pragma("foreign_key_check")).toEqual([]);
    });
  });

  it("still refuses a second task with a stored idempotency key, and a bad status", () => {
    withDb(file, (db) => {
      const insert = db.prepare(
        "insert into tasks (id, kind, status, created_at, updated_at, idempotency_key, data) values (?, 'k', ?, 0, 0, ?, '{}')",
      );
      expect(() => insert.run("task_x", "pending", "order-42")).toThrow(/UNIQUE/);
      expect(() => insert.run("task_y", "paused", null)).toThrow(/CHECK/);
      expect(() => insert.run(task("done").id, "pending", null)).toThrow(/UNIQUE/);
    });
  });

  // The queries the lean layout is built for, shaped as the design gives them: each kept
  // index is the one a query searches, in the order the query wants (no sort step).
  const PLANS: [why: string, query: string, plan: string[]][] = [
    [
      "a claim of a kind walks tasks_claim_kind in claim order, and writes by rowid",
      `update tasks set status = 'running', fence = fence + 1, runs = runs + 1,
         lease_owner = ?, lease_expires_at = ?, updated_at = ?
       where rowid in (
         select rowid from tasks where status = 'pending' and kind = ? and +run_at <= ?
         order by priority desc, run_at, id limit ?)
       returning seq, fence, data`,
      [
        "SEARCH tasks USING INTEGER PRIMARY KEY (rowid=?)",
        "LIST SUBQUERY 1",
        "SEARCH tasks USING COVERING INDEX tasks_claim_kind (kind=?)",
      ],
    ],
    [
      "a fenced transition is one rowid lookup",
      `update tasks set status = 'done', lease_owner = null, lease_expires_at = null,
         run_value = ?, run_finished_at = ?, updated_at = ?
       where seq = ? and fence = ? and status = 'running'`,
      ["SEARCH tasks USING INTEGER PRIMARY KEY (rowid=?)"],
    ],
    [
      "pending(kind) walks tasks_pending_kind_id in id order",
      "select id, data from tasks where status = 'pending' and kind = ? order by id",
      ["SEARCH tasks USING INDEX tasks_pending_kind_id (kind=?)"],
    ],
    [
      "pending() walks tasks_id in id order",
      "select id, data from tasks where status = 'pending' order by id",
      ["SCAN tasks USING INDEX tasks_id"],
    ],
    [
      "the sweep walks tasks_lease_expiry",
      "select seq from tasks where status = 'running' and lease_expires_at <= ? order by lease_expires_at",
      ["SEARCH tasks USING COVERING INDEX tasks_lease_expiry (lease_expires_at<?)"],
    ],
    [
      "a task is found by id through tasks_id",
      "select seq, data from tasks where id = ?",
      ["SEARCH tasks USING INDEX tasks_id (id=?)"],
    ],
    [
      "list(prefix) walks tasks_id from the prefix",
      "select id from tasks where id >= ? order by id",
      ["SEARCH tasks USING COVERING INDEX tasks_id (id>?)"],
    ],
    [
      "an idempotency key is found through tasks_idempotency_key",
      "select id from tasks where idempotency_key = ?",
      ["SEARCH tasks USING INDEX tasks_idempotency_key (idempotency_key=?)"],
    ],
    [
      "quarantined() walks tasks_quarantined in its order",
      "select id, kind from tasks where quarantined_at is not null order by quarantined_at, id",
      ["SEARCH tasks USING INDEX tasks_quarantined (quarantined_at>?)"],
    ],
    [
      "a task's appended steps are found by its seq, in order",
      "select data from task_steps where task = ? order by ordinal",
      ["SEARCH task_steps USING INDEX sqlite_autoindex_task_steps_1 (task=?)"],
    ],
    [
      "a task's appended length is found by its seq",
      "select length from task_steps_length where task = ?",
      ["SEARCH task_steps_length USING INTEGER PRIMARY KEY (rowid=?)"],
    ],
  ];

  describe("query plans", () => {
    let db: Database.Database;
    beforeAll(() => {
      db = new Database(file, { readonly: true });
      return () => db.close();
    });

    it.each(PLANS)("%s", (_why, query, steps) => {
      expect(plan(db, query)).toEqual(steps);
    });
  });
});

/** A lease with its token left out: the token's format is the new layout's own. */
function withoutToken<T extends { readonly lease: ExpectedLease | null }>(value: T) {
  return { ...value, lease: value.lease && { ...value.lease, token: "(token)" } };
}

/** A registry on an upgraded copy of the fixture, its clock at the fixture's last time. */
async function upgraded() {
  const file = fixtureCopy();
  const backend = await SqliteBackend.open(file);
  return { file, backend, registry: new TaskRegistry(backend, { clock: () => EXPECTED.clock }) };
}

const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

// These assertions read the upgraded file through the registry, so they pass once the SQLite
// adapter is the one written for the lean layout (issue 9): run them after merging it.
describe("an upgraded 0005 file through the registry (needs the lean-layout SQLite adapter)", () => {
  it("reads every task back as before: documents byte for byte, records, lists and queues", async () => {
    const { registry, backend } = await upgraded();
    try {
      for (const [name, expected] of Object.entries(TASKS)) {
        expect(await backend.get(expected.id), name).toBe(expected.stored);
        if ("error" in expected.inspect) {
          expect((await rejection(registry.get(expected.id))).code, name).toBe("SERIALIZATION");
          expect((await rejection(registry.inspect(expected.id))).code, name).toBe("SERIALIZATION");
          continue;
        }
        expect(plain(await registry.get(expected.id)), name).toEqual(expected.get);
        const actual = plain(await registry.inspect(expected.id)) as ExpectedRecord;
        expect(withoutToken(actual), name).toEqual(withoutToken(expected.inspect));
      }
      expect(await backend.list("")).toEqual(EXPECTED.list);
      for (const [kind, tasks] of Object.entries(EXPECTED.pending)) {
        expect(plain(await registry.pending(kind)), `pending(${kind})`).toEqual(tasks);
      }
      expect(plain(await registry.quarantined())).toEqual(EXPECTED.quarantined);
    } finally {
      await registry.close();
    }
  });

  it("running tasks are finished by their holders with the token inspect() gives now", async () => {
    const { registry, backend } = await upgraded();
    try {
      const tokenOf = async (name: string) => {
        const { lease } = await registry.inspect(task(name).id);
        expect(lease?.owner, name).toBe(record(name).lease?.owner);
        return lease?.token as string;
      };
      // A token from before the upgrade holds nothing any more.
      const appended = task("runningAppended").id;
      const old = record("runningAppended").lease?.token as string;
      await expectCode(registry.complete(appended, old, null), "LEASE_LOST");

      // Appended steps stay appended, and complete folds them into the document.
      expect(await registry.complete(appended, await tokenOf("runningAppended"), 7)).toEqual({
        status: "done",
      });
      const done = await registry.get(appended);
      expect(done.status).toBe("done");
      expect(done.checkpoint?.steps.map((s) => s.name)).toEqual(["s0", "s1", "s2"]);
      expect(done.checkpoint?.value).toEqual({ Ok: 7 });

      // Steps inside the document, one appended: the next one appends after both.
      const inDocument = task("runningInDocument").id;
      const token = await tokenOf("runningInDocument");
      await registry.recordStep(inDocument, token, 3, stepRecord("index", 1n, null));
      expect((await registry.get(inDocument)).checkpoint?.steps.map((s) => s.name)).toEqual([
        "fetch",
        "parse",
        "store",
        "index",
      ]);
      expect(await registry.fail(inDocument, token, "upstream gone")).toMatchObject({
        status: "pending",
      });
      expect((await registry.inspect(inDocument)).lastError).toMatchObject({
        message: "upstream gone",
      });

      // The cancel requested before the upgrade still ends the run failed.
      const cancelled = task("cancelRequested").id;
      expect(
        await registry.complete(cancelled, await tokenOf("cancelRequested"), null),
      ).toMatchObject({ status: "failed", error: { kind: "cancelled", reason: "operator stop" } });

      // updateStatus's lease: its heartbeat still holds it.
      const seeded = task("runningSeed").id;
      const heartbeat = await registry.heartbeat(seeded, await tokenOf("runningSeed"), {
        leaseMs: 60_000,
      });
      expect(heartbeat.expiresAt).toBe(EXPECTED.clock + 60_000);
      expect(await backend.get(seeded)).toBe(task("runningSeed").stored);
    } finally {
      await registry.close();
    }
  });

  it("quarantined tasks are repaired and run again", async () => {
    const { registry } = await upgraded();
    try {
      for (const name of ["quarantined", "quarantinedRunning"]) {
        const { id } = task(name);
        const { kind } = (await registry.quarantined()).find((q) => q.id === id) ?? {};
        await registry.repair(id, {
          id,
          kind: kind as string,
          status: "pending",
          input: { repaired: name },
          checkpoint: null,
          attempts: 0,
        });
        expect((await registry.get(id)).input).toEqual({ repaired: name });
        const claimed = await registry.claim(kind as string, { owner: "after" });
        expect(claimed?.task.id, name).toBe(id);
        expect(await registry.complete(id, claimed?.lease.token as string, null)).toEqual({
          status: "done",
        });
      }
      expect(await registry.quarantined()).toEqual([]);
    } finally {
      await registry.close();
    }
  });

  it("a claim takes the next task as before; keys and new tasks follow the old ones", async () => {
    const { file, registry, backend } = await upgraded();
    try {
      const claim = async (kinds: string | string[]) =>
        (await registry.claim(kinds, { owner: "after" }))?.task.id ?? null;
      // Of email, the seed's put wrote a task due at 0: the earliest due.
      expect(await claim("email")).toBe(task("seedPut").id);
      // Of report, the prioritized one, though submitted after another.
      expect(await claim("report")).toBe(task("pendingPriority").id);
      // Of index, the retried task is not due yet, and nothing else is pending.
      expect(await claim("index")).toBeNull();
      // Of any kind, then: the earliest due.
      expect(await claim([])).toBe(task("pendingPlain").id);
      // A claim takes back an expired lease: updateStatus's, 30 s after it was set.
      const later = new TaskRegistry(backend, { clock: () => EXPECTED.clock + 3_600_000 });
      expect((await later.claim("seed", { owner: "after" }))?.task.id).toBe(task("runningSeed").id);

      // A stored idempotency key still returns its task; a new task lists after the old ones.
      expect(await registry.submit("email", {}, { idempotencyKey: "order-42" })).toBe(
        task("pendingKeyed").id,
      );
      const fresh = await registry.submit("email", { n: "new" });
      expect(await backend.list("")).toEqual([...EXPECTED.list, fresh].sort());
      expect(rows(file, "select id from tasks order by seq desc limit 1")).toEqual([{ id: fresh }]);
    } finally {
      await registry.close();
    }
  });
});
