/**
 * The physical-limit baseline: raw better-sqlite3 running the same SQL as the registry on the
 * same table shape (the registry's own migrated schema, every index), with the same pragmas
 * (WAL, synchronous FULL or NORMAL), through prepared statements and nothing else.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import {
  type Durability,
  newTaskId,
  openRegistry,
  SqliteBackend,
  type TaskId,
} from "../src/index.js";

/**
 * A row of the registry's `tasks` table as `select *` returns it. Raw inserts copy every column
 * of a template row, so they follow the registry's schema whatever columns it has.
 */
export interface TaskColumns {
  readonly id: string;
  readonly status: string;
  readonly data: string;
  readonly run_at: number;
  readonly [column: string]: unknown;
}

/** The registry's insert of one row: every column of `template`, bound by position. */
export function insertSql(template: TaskColumns): string {
  const columns = Object.keys(template);
  return `insert into "tasks" (${columns.map((c) => `"${c}"`).join(", ")}) values (${columns.map(() => "?").join(", ")})`;
}

/** A better-sqlite3 connection with the registry's pragmas. */
export function openRaw(path: string, durability: Durability): Database.Database {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${durability === "full" ? "FULL" : "NORMAL"}`);
  return db;
}

/** Create (migrate) the registry's schema in a new file, so raw inserts hit the same table shape. */
export async function createRegistryFile(path: string, durability: Durability): Promise<void> {
  const backend = await SqliteBackend.open(path, { durability });
  await backend.close();
}

/**
 * Columns the registry's inserts leave alone: the rowid SQLite assigns, and those only
 * quarantine() writes.
 */
const NOT_INSERTED = new Set(["seq", "quarantined_at", "quarantine_reason", "quarantined_status"]);

/** The row as the registry inserts it: every column it writes. */
export function readRow(db: Database.Database, id: string): TaskColumns {
  const row = db.prepare(`select * from tasks where id = ?`).get(id) as TaskColumns | undefined;
  if (row === undefined) throw new Error(`no row ${id}`);
  return Object.fromEntries(
    Object.entries(row).filter(([column]) => !NOT_INSERTED.has(column)),
  ) as TaskColumns;
}

export interface Templates {
  /** A task just submitted (pending), exactly as the registry stores it. */
  readonly pending: TaskColumns;
  /** The same task once claimed (running, under a lease). */
  readonly running: TaskColumns;
  /** The same task after claim and complete (done). */
  readonly done: TaskColumns;
}

/**
 * Rows in the registry's exact format, made by the registry itself (in a scratch file):
 * raw inserts copy them with a new id, so raw and registry write the same bytes.
 */
export async function registryTemplates(kind: string, input: unknown): Promise<Templates> {
  const dir = mkdtempSync(join(tmpdir(), "cruxx-bench-template-"));
  try {
    const path = join(dir, "template.db");
    const registry = await openRegistry(path, { durability: "normal" });
    const db = new Database(path, { readonly: true });
    try {
      const id = await registry.submit(kind, input);
      const pending = readRow(db, id);
      const claimed = await registry.claim(kind, { owner: "template" });
      if (claimed === null) throw new Error("template task was not claimable");
      const running = readRow(db, id);
      await registry.complete(id, claimed.lease.token, null);
      const done = readRow(db, id);
      return { pending, running, done };
    } finally {
      db.close();
      await registry.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A copy of `template` with a fresh task id (also inside its document) and times of `now`. */
export function copyRow(
  template: TaskColumns,
  now: number,
  id: TaskId = newTaskId(now),
): unknown[] {
  const values: unknown[] = [];
  for (const [column, value] of Object.entries(template)) {
    if (column === "id") values.push(id);
    else if (column === "data") values.push(template.data.replace(template.id, id));
    else if (column === "created_at" || column === "updated_at") values.push(now);
    else if (column === "run_at") values.push(template.status === "pending" ? now : value);
    else values.push(value);
  }
  return values;
}

/** `n` single-row inserts, each its own autocommit transaction; returns elapsed ms. */
export function rawSingleInserts(db: Database.Database, template: TaskColumns, n: number): number {
  const insert = db.prepare(insertSql(template));
  const start = performance.now();
  for (let i = 0; i < n; i++) insert.run(copyRow(template, Date.now()));
  return performance.now() - start;
}

/** `n` inserts in one transaction; returns elapsed ms. */
export function rawBatchInsert(db: Database.Database, template: TaskColumns, n: number): number {
  const insert = db.prepare(insertSql(template));
  const start = performance.now();
  db.transaction(() => {
    const now = Date.now();
    for (let i = 0; i < n; i++) insert.run(copyRow(template, now));
  }).immediate();
  return performance.now() - start;
}

/** Fill the table with `n` copies of `template`, `batch` rows per transaction. */
export function rawFill(db: Database.Database, template: TaskColumns, n: number, batch = 50_000) {
  const insert = db.prepare(insertSql(template));
  const fill = db.transaction((count: number) => {
    const now = Date.now();
    for (let i = 0; i < count; i++) insert.run(copyRow(template, now));
  });
  for (let done = 0; done < n; done += batch) fill.immediate(Math.min(batch, n - done));
}

/** Bytes of the pages in use (excluding free pages), as the database sees it now. */
export function liveBytes(db: Database.Database): number {
  const pageSize = db.pragma("page_size", { simple: true }) as number;
  const pages = db.pragma("page_count", { simple: true }) as number;
  const free = db.pragma("freelist_count", { simple: true }) as number;
  return (pages - free) * pageSize;
}

/** The one-statement write the registry's checkpoint() ends in: a new document for the row. */
export function rawDocumentWriter(db: Database.Database): (id: string, data: string) => void {
  const read = db.prepare(`select data from tasks where id = ?`);
  const update = db.prepare(`update tasks set data = ?, updated_at = ? where id = ?`);
  return db.transaction((id: string, data: string) => {
    read.get(id);
    update.run(data, Date.now(), id);
  }).immediate as (id: string, data: string) => void;
}

export function sqliteVersion(): string {
  const db = new Database(":memory:");
  try {
    return (db.prepare("select sqlite_version() as v").get() as { v: string }).v;
  } finally {
    db.close();
  }
}
