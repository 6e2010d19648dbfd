/**
 * A process killed in the middle of migration 0006 leaves the file as it was: the migration
 * runs inside open's one immediate transaction, so its writes (spilled to the WAL, on a file
 * this big, long before the commit) are never committed. The next open migrates it in full.
 */
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../migrations/index.js";
import { MIGRATION_TABLE } from "../../src/backend/sqlite/tables.js";
import { tempDbPath, withDb } from "../support/backends.js";
import { killChildren, startScript } from "../support/child.js";
import { migrateFile } from "../support/migrate.js";
import type { ChildConfig } from "./migration-crash-child.js";

const CHILD = join(import.meta.dirname, "migration-crash-child.ts");
const FIXTURE = join(import.meta.dirname, "..", "fixtures", "schema-0005.db");
/** Tasks added to the fixture: enough that the migration's pages spill to the WAL uncommitted. */
const BULK = 200_000;

afterEach(() => killChildren());

/** The fixture and BULK more tasks in every status, every tenth with an appended step. */
function bigFile(): string {
  const file = tempDbPath();
  copyFileSync(FIXTURE, file);
  withDb(file, (db) => {
    db.pragma("journal_mode = WAL"); // as the registry leaves it, so open changes no byte
    db.exec(`
      begin;
      insert into tasks (id, kind, status, data, created_at, updated_at, run_at, runs,
        lease_owner, lease_token, lease_expires_at, idempotency_key)
      with recursive n(i) as (select 1 union all select i + 1 from n where i < ${BULK})
      select printf('task_bulk%021d', i), 'bulk', s.status,
        printf('{"id":"task_bulk%021d","kind":"bulk","status":"%s","input":{"n":%d},"checkpoint":null,"attempts":0}',
          i, s.status, i),
        i, i, i, iif(s.status = 'pending', 0, 1),
        iif(s.status = 'running', 'bulk-worker', null), iif(s.status = 'running', 'token', null),
        iif(s.status = 'running', i + 60000, null), iif(i % 7 = 0, 'key-' || i, null)
      from n join (select 0 as m, 'pending' as status union all select 1, 'running'
        union all select 2, 'done' union all select 3, 'failed') s on s.m = i % 4;
      insert into task_steps (task_id, ordinal, data)
        select id, 0, '{"name":"bulk"}' from tasks where kind = 'bulk' and rowid % 10 = 0;
      insert into task_steps_length (task_id, length)
        select task_id, 16 from task_steps where data = '{"name":"bulk"}';
      commit;
    `);
    db.pragma("wal_checkpoint(TRUNCATE)");
  });
  return file;
}

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** The file as a reader sees it: its schema, the migrations applied, each table's row count. */
function summary(db: Database.Database) {
  const schema = db.prepare("select type, name, sql from sqlite_master order by name").all() as {
    type: string;
    name: string;
  }[];
  const rows = schema
    .filter((object) => object.type === "table")
    .map(({ name }) => [name, db.prepare(`select count(*) from "${name}"`).pluck().get()]);
  const applied = db.prepare(`select name from ${MIGRATION_TABLE} order by name`).pluck().all();
  return { schema, applied, rows: Object.fromEntries(rows) };
}

/** Run the migration in a child process and SIGKILL it just before the statement `stopAt`. */
async function killMidMigration(file: string, stopAt: string): Promise<void> {
  const config: ChildConfig = { path: file, stopAt };
  const child = startScript(CHILD, config);
  await child.line("stopped", 120_000);
  child.process.kill("SIGKILL");
  expect((await child.exited).signal).toBe("SIGKILL");
}

describe("a crash in the middle of migration 0006", () => {
  it("leaves the file as it was, and the next open migrates it", { timeout: 300_000 }, async () => {
    const file = bigFile();
    const before = { bytes: sha256(file), summary: withDb(file, summary) };
    expect(before.summary.applied).toEqual(Object.keys(MIGRATIONS).sort().slice(0, 5));

    // Killed once the new tables are filled and the old ones dropped; then once every
    // statement of the migration has run and only its record and the commit remain.
    for (const stopAt of ['alter table "tasks_new" rename', `insert into "${MIGRATION_TABLE}"`]) {
      await killMidMigration(file, stopAt);
      // The migration's work reached the WAL, uncommitted; the file itself was never written.
      expect(statSync(`${file}-wal`).size, stopAt).toBeGreaterThan(1_000_000);
      expect(sha256(file), stopAt).toBe(before.bytes);
      withDb(file, (db) => {
        expect(summary(db), stopAt).toEqual(before.summary);
        expect(db.pragma("integrity_check"), stopAt).toEqual([{ integrity_check: "ok" }]);
      });
      // Closing, the reader checkpointed every committed frame of the WAL into the file and
      // removed it; the file is unchanged, so there was none: it read the old file, whole.
      expect(existsSync(`${file}-wal`), stopAt).toBe(false);
      expect(sha256(file), stopAt).toBe(before.bytes);
    }

    await migrateFile(file);
    withDb(file, (db) => {
      expect(summary(db).applied).toEqual(Object.keys(MIGRATIONS).sort());
      expect(db.prepare("select count(*) as n, max(seq) as last from tasks").get()).toEqual({
        n: BULK + 17,
        last: BULK + 17,
      });
      expect(db.prepare("select count(*) as n from task_steps").get()).toEqual({
        n: BULK / 10 + 4,
      });
      expect(db.pragma("integrity_check")).toEqual([{ integrity_check: "ok" }]);
    });
  });
});
