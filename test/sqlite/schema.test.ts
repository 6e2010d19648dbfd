/**
 * The SQLite schema on real files: migrations recorded and not re-run, concurrent first
 * opens, WAL and synchronous settings, and `pending()` answered from an index.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../migrations/index.js";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import { MIGRATION_TABLE } from "../../src/backend/sqlite/tables.js";
import { newTaskId, type TaskId } from "../../src/ids.js";
import { openRegistry } from "../../src/open.js";
import { TaskRegistry } from "../../src/registry.js";
import { writeTask } from "../../src/wire/codec.js";
import type { TaskStatus } from "../../src/wire/schema.js";
import { tempDbPath, withDb } from "../support/backends.js";

const MIGRATION_NAMES = Object.keys(MIGRATIONS).sort();

interface MigrationRow {
  name: string;
  timestamp: string;
}

function migrationRows(file: string): MigrationRow[] {
  return withDb(
    file,
    (db) =>
      db
        .prepare(`select name, timestamp from ${MIGRATION_TABLE} order by name`)
        .all() as MigrationRow[],
  );
}

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** A Database that records every statement it runs. */
function tracedDatabase(file: string): { db: Database.Database; statements: string[] } {
  const statements: string[] = [];
  const db = new Database(file, { verbose: (sql) => statements.push(String(sql)) });
  return { db, statements };
}

const WRITES = /^\s*(create|insert|update|delete|drop|alter|replace)\b/i;

describe("migrations", () => {
  it("run on open and record every migration by name", async () => {
    const file = tempDbPath();
    const reg = await openRegistry(file);
    await reg.close();

    const rows = migrationRows(file);
    expect(rows.map((r) => r.name)).toEqual(MIGRATION_NAMES);
    for (const row of rows) expect(Number.isNaN(Date.parse(row.timestamp))).toBe(false);

    const objects = withDb(
      file,
      (db) =>
        db
          .prepare("select type, name from sqlite_master where tbl_name = 'tasks' order by name")
          .all() as { type: string; name: string }[],
    );
    expect(objects).toEqual(
      // Only the indexes the queries search (test/sqlite/query-plans.test.ts).
      [
        { type: "table", name: "tasks" },
        { type: "index", name: "tasks_claim_kind" },
        { type: "index", name: "tasks_id" },
        { type: "index", name: "tasks_idempotency_key" },
        { type: "index", name: "tasks_lease_expiry" },
        { type: "index", name: "tasks_pending_kind_id" },
        { type: "index", name: "tasks_quarantined" },
      ],
    );
  });

  it("reopening runs nothing new and changes nothing", async () => {
    const file = tempDbPath();
    const first = await openRegistry(file);
    const id = await first.submit("build", { n: 1 });
    await first.close();
    expect(readdirSync(dirname(file))).toEqual(["registry.db"]);
    const rowsBefore = migrationRows(file);
    const hashBefore = sha256(file);

    // Through the application's own (traced) connection: no DDL or DML on open.
    const { db, statements } = tracedDatabase(file);
    const backend = await SqliteBackend.open(db);
    expect(statements.filter((sql) => WRITES.test(sql))).toEqual([]);
    expect((await new TaskRegistry(backend).get(id)).input).toEqual({ n: 1 });
    await backend.close();
    expect(db.open).toBe(true); // the application's connection stays the application's
    db.close();

    // And through a path, twice more.
    for (let i = 0; i < 2; i++) {
      const reg = await openRegistry(file);
      expect((await reg.get(id)).kind).toBe("build");
      await reg.close();
    }

    expect(migrationRows(file)).toEqual(rowsBefore);
    expect(sha256(file)).toBe(hashBefore);
    expect(readdirSync(dirname(file))).toEqual(["registry.db"]);
  });

  it("two connections opening the same new file at once both succeed", async () => {
    // Several rounds: the race is between the two migrators' interleaved statements.
    for (let round = 0; round < 5; round++) {
      const file = tempDbPath();
      const results = await Promise.allSettled([
        SqliteBackend.open(file),
        SqliteBackend.open(file),
      ]);
      const opened = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      try {
        const failures = results.flatMap((r) =>
          r.status === "rejected" ? [String((r.reason as Error).message)] : [],
        );
        expect(failures, `round ${round}`).toEqual([]);
        const [a, b] = opened.map((backend) => new TaskRegistry(backend));
        if (a === undefined || b === undefined) throw new Error("unreachable");
        const id = await a.submit("build", round);
        expect((await b.get(id)).input).toBe(round);
        await b.updateStatus(id, "done");
        expect((await a.get(id)).status).toBe("done");
      } finally {
        for (const backend of opened) await backend.close();
      }
      expect(migrationRows(file).map((r) => r.name)).toEqual(MIGRATION_NAMES);
    }
  });
});

describe("connection settings", () => {
  const settings = (db: Database.Database) => ({
    journalMode: db.pragma("journal_mode", { simple: true }),
    synchronous: db.pragma("synchronous", { simple: true }),
  });

  it("WAL with synchronous FULL by default", async () => {
    const db = new Database(tempDbPath());
    const backend = await SqliteBackend.open(db);
    expect(settings(db)).toEqual({ journalMode: "wal", synchronous: 2 });
    await backend.close();
    db.close();
  });

  it('synchronous NORMAL with durability "normal"', async () => {
    const db = new Database(tempDbPath());
    const backend = await SqliteBackend.open(db, { durability: "normal" });
    expect(settings(db)).toEqual({ journalMode: "wal", synchronous: 1 });
    await backend.close();
    db.close();
  });

  it('an explicit durability "full" is FULL, and WAL stays recorded in the file', async () => {
    const file = tempDbPath();
    const db = new Database(file);
    db.pragma("synchronous = OFF");
    const backend = await SqliteBackend.open(db, { durability: "full" });
    expect(settings(db)).toEqual({ journalMode: "wal", synchronous: 2 });
    await backend.close();
    db.close();
    expect(withDb(file, (plain) => plain.pragma("journal_mode", { simple: true }))).toBe("wal");
  });
});

describe("pending() is answered from an index", () => {
  it("over 100,000 rows: right answers, and query plans that search an index", async () => {
    const file = tempDbPath();
    const { db, statements } = tracedDatabase(file);
    const backend = await SqliteBackend.open(db);
    const reg = new TaskRegistry(backend);

    // 100,000 tasks, one in a thousand pending of kind "k" and one in a thousand pending of
    // kind "other"; the rest running/done/failed of either kind. Ids rise with the index.
    const total = 100_000;
    const t0 = Date.UTC(2025, 0, 1);
    const pendingK: TaskId[] = [];
    const pendingAll: TaskId[] = [];
    const others: TaskStatus[] = ["running", "done", "failed"];
    const insert = db.prepare(
      "insert into tasks (id, kind, status, data, created_at, updated_at) values (?, ?, ?, ?, ?, ?)",
    );
    db.transaction(() => {
      for (let i = 0; i < total; i++) {
        const id = newTaskId(t0 + i);
        let kind = i % 2 === 0 ? "k" : "other";
        let status: TaskStatus = others[i % 3] as TaskStatus;
        if (i % 1000 === 0 || i % 1000 === 501) {
          status = "pending";
          kind = i % 1000 === 0 ? "k" : "other";
          pendingAll.push(id);
          if (kind === "k") pendingK.push(id);
        }
        const data = writeTask({ id, kind, status, input: i, checkpoint: null, attempts: 0 });
        insert.run(id, kind, status, data, t0 + i, t0 + i);
      }
    })();
    expect(pendingK).toHaveLength(100);
    expect(pendingAll).toHaveLength(200);

    const plans = async (): Promise<Map<string, string>> => {
      statements.length = 0;
      const ofKind = await reg.pending("k");
      expect(ofKind.map((t) => t.id)).toEqual(pendingK);
      expect(ofKind.every((t) => t.kind === "k" && t.status === "pending")).toBe(true);
      const all = await reg.pending("");
      expect(all.map((t) => t.id)).toEqual(pendingAll);
      expect((await reg.pending("k", { limit: 3 })).map((t) => t.id)).toEqual(pendingK.slice(0, 3));
      expect(await reg.pending("nothing-of-this-kind")).toEqual([]);
      const selects = [...new Set(statements.filter((sql) => /^\s*select\b/i.test(sql)))];
      // `statements` holds the expanded SQL (values inlined), so it can be explained as is.
      return new Map(
        selects.map((sql) => [
          sql,
          (db.prepare(`explain query plan ${sql}`).all() as { detail: string }[])
            .map((row) => row.detail)
            .join("\n"),
        ]),
      );
    };

    const check = (found: Map<string, string>): void => {
      // Every kind is each kind with pending tasks (found one seek each), of that kind.
      const ofKind = [...found].filter(([sql]) => /"kind" = /.test(sql));
      const kindSeeks = [...found].filter(([sql]) => /"kind" > /.test(sql));
      expect(ofKind.length, "the pending-of-kind statement was captured").toBeGreaterThan(0);
      expect(kindSeeks.length, "the next-pending-kind statement was captured").toBeGreaterThan(0);
      expect(ofKind.length + kindSeeks.length).toBe(found.size);
      for (const [sql, plan] of found) {
        expect(sql).toMatch(/\bfrom\s+"?tasks"?/i);
        // The partial indexes hold pending tasks only, so walking one reads no other row.
        expect(plan, sql).toMatch(
          /^SEARCH tasks USING (COVERING )?INDEX tasks_\w+ \(kind[=>]\?\)$/,
        );
        expect(plan, sql).not.toMatch(/TEMP B-TREE/);
      }
      for (const [sql, plan] of ofKind) {
        expect(plan, sql).toMatch(/SEARCH tasks USING INDEX tasks_pending_kind_id \(kind=\?\)/);
      }
      for (const [sql, plan] of kindSeeks) {
        expect(plan, sql).toMatch(/USING COVERING INDEX tasks_(claim|pending)_kind\w* \(kind>\?\)/);
      }
    };

    const started = Date.now();
    check(await plans());
    // After ANALYZE (as `PRAGMA optimize` may run in a long-lived application) the planner
    // has statistics; the plans must still search the index.
    db.exec("analyze");
    check(await plans());
    expect(Date.now() - started).toBeLessThan(5_000);

    await backend.close();
    db.close();
  });
});

describe("claim() is answered from the claim index", () => {
  it("with a backlog, it walks the index in claim order and never sorts the due tasks", async () => {
    const file = tempDbPath();
    const { db, statements } = tracedDatabase(file);
    let now = Date.UTC(2026, 0, 1);
    const reg = new TaskRegistry(await SqliteBackend.open(db, { durability: "normal" }), {
      clock: () => now,
    });
    // 5,000 pending tasks over two kinds, some delayed, priorities 0–4.
    await reg.submitMany(
      Array.from({ length: 5000 }, (_, i) => ({
        kind: i % 2 === 0 ? "k" : "other",
        input: i,
        options: { priority: i % 5, ...(i % 7 === 0 ? { delayMs: 60_000 } : {}) },
      })),
    );
    statements.length = 0;
    const ofKind = await reg.claim("k", { owner: "w" });
    const anyKind = await reg.claim("", { owner: "w" });
    // The best due task: priority 4 first, then the oldest among them.
    expect(ofKind?.task.input).toBe(4);
    expect(anyKind?.task.input).toBe(9);
    now += 60_000; // the delayed ones fall due, but 14 (delayed) is due later than 19
    expect((await reg.claim(["k", "other"], { owner: "w" }))?.task.input).toBe(19);

    const claims = [...new Set(statements.filter((sql) => /order by "priority" desc/i.test(sql)))];
    expect(claims.length).toBeGreaterThanOrEqual(2);
    for (const sql of claims) {
      const plan = (db.prepare(`explain query plan ${sql}`).all() as { detail: string }[])
        .map((row) => row.detail)
        .join("\n");
      expect(plan, sql).toMatch(/USING (COVERING )?INDEX tasks_claim_(kind|any)\b/);
      expect(plan, sql).not.toMatch(/SCAN tasks(?! USING)/);
      expect(plan, sql).not.toMatch(/TEMP B-TREE/);
    }
    await reg.close();
    db.close();
  });
});
