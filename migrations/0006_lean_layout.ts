import { type Kysely, sql } from "kysely";

/**
 * The lean layout: a task is addressed by an integer key, and a run's state lives in columns
 * that the adapter splices into the stored document on read, so claim and completion write a
 * few small columns instead of the whole row and document.
 *
 * - `seq` is the rowid (the table's own B-tree key); the text `id` moves to the unique index
 *   `tasks_id`. Rows are copied in id order, so the tasks already stored keep their order.
 * - `fence` counts leases: its decimal text is the lease token (`lease_token` is gone). A
 *   task holding a lease gets 1, so every token handed out before the upgrade stops working
 *   and its holder reads the new one with inspect().
 * - `run_value`, `run_started_at`, `run_finished_at` overlay the checkpoint's value and times
 *   while a run is in flight; NULL means the document's own, which is what every document
 *   written before this migration holds (each was written whole).
 * - `data` is the last column: SQLite decodes a record only up to the last column a statement
 *   reads, so reading the columns before it never reads a large document's overflow pages.
 *   `last_error` and `run_value`, the other long texts, come just before it.
 * - `task_steps` and `task_steps_length` are keyed by `seq` instead of the text id.
 * - Of the queue indexes, those the queries still search are made again as they were;
 *   `tasks_pending_id`, `tasks_claim_any` and `tasks_due` are not.
 *
 * It runs inside open's one immediate transaction with every other pending migration, so a
 * crash anywhere in it leaves the file as it was (test/sqlite/migration-crash.test.ts).
 *
 * No `down`: the old layout cannot hold a run's overlay state (a task running under this
 * layout has its value and times only in the run_* columns, and its lease token is a counter
 * the old code would not recognise), so going back would lose or corrupt running tasks.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("tasks_new")
    .addColumn("seq", "integer", (c) => c.primaryKey())
    .addColumn("id", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) =>
      c.notNull().check(sql`status in ('pending', 'running', 'done', 'failed')`),
    )
    .addColumn("priority", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("run_at", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("runs", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("max_attempts", "integer", (c) => c.notNull().defaultTo(3))
    .addColumn("fence", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("lease_owner", "text")
    .addColumn("lease_expires_at", "integer")
    .addColumn("cancel_requested", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("steps_in_document", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("created_at", "integer", (c) => c.notNull())
    .addColumn("updated_at", "integer", (c) => c.notNull())
    .addColumn("run_started_at", "integer")
    .addColumn("run_finished_at", "integer")
    .addColumn("idempotency_key", "text")
    .addColumn("quarantined_at", "integer")
    .addColumn("quarantine_reason", "text")
    .addColumn("quarantined_status", "text")
    .addColumn("last_error", "text")
    .addColumn("run_value", "text")
    .addColumn("data", "text", (c) => c.notNull())
    .execute();
  // A lease is what the old adapter read as one: owner, token and expiry all present. Only
  // running rows hold one (a quarantined row keeps the lease it had, for its repair).
  await sql`insert into tasks_new (
      id, kind, status, priority, run_at, runs, max_attempts, fence, lease_owner,
      lease_expires_at, cancel_requested, steps_in_document, created_at, updated_at,
      idempotency_key, quarantined_at, quarantine_reason, quarantined_status, last_error, data)
    select id, kind, status, priority, run_at, runs, max_attempts, leased,
      iif(leased, lease_owner, null), iif(leased, lease_expires_at, null), cancel_requested,
      steps_in_document, created_at, updated_at, idempotency_key, quarantined_at,
      quarantine_reason, quarantined_status, last_error, data
    from (
      select *, lease_owner is not null and lease_token is not null
        and lease_expires_at is not null as leased
      from tasks
    )
    order by id`.execute(db);

  await db.schema
    .createTable("task_steps_new")
    .addColumn("task", "integer", (c) => c.notNull())
    .addColumn("ordinal", "integer", (c) => c.notNull())
    .addColumn("data", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("task_steps_pk", ["task", "ordinal"])
    .execute();
  await db.schema
    .createTable("task_steps_length_new")
    .addColumn("task", "integer", (c) => c.primaryKey())
    .addColumn("length", "integer", (c) => c.notNull())
    .execute();
  // Steps of a task that no longer exists (nothing enforced the reference) are not carried over.
  await sql`insert into task_steps_new (task, ordinal, data)
    select t.seq, s.ordinal, s.data from task_steps s join tasks_new t on t.id = s.task_id
    order by t.seq, s.ordinal`.execute(db);
  await sql`insert into task_steps_length_new (task, length)
    select t.seq, l.length from task_steps_length l join tasks_new t on t.id = l.task_id
    order by t.seq`.execute(db);

  for (const table of ["task_steps", "task_steps_length", "tasks"]) {
    await db.schema.dropTable(table).execute();
    await db.schema.alterTable(`${table}_new`).renameTo(table).execute();
  }

  // The indexes the queries search, each as 0001–0003 defined it (reasons there).
  const pending = sql<boolean>`${sql.ref("status")} = ${sql.lit("pending")}`;
  await db.schema.createIndex("tasks_id").unique().on("tasks").column("id").execute();
  await db.schema
    .createIndex("tasks_idempotency_key")
    .unique()
    .on("tasks")
    .column("idempotency_key")
    .where(sql.ref("idempotency_key"), "is not", null)
    .execute();
  await db.schema
    .createIndex("tasks_claim_kind")
    .on("tasks")
    .columns(["kind", "priority desc", "run_at", "id"])
    .where(pending)
    .execute();
  await db.schema
    .createIndex("tasks_pending_kind_id")
    .on("tasks")
    .columns(["kind", "id"])
    .where(pending)
    .execute();
  await db.schema
    .createIndex("tasks_lease_expiry")
    .on("tasks")
    .column("lease_expires_at")
    .where(sql.ref("status"), "=", sql.lit("running"))
    .execute();
  await db.schema
    .createIndex("tasks_quarantined")
    .on("tasks")
    .columns(["quarantined_at", "id"])
    .where(sql.ref("quarantined_at"), "is not", null)
    .execute();
}
