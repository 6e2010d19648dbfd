import { type Kysely, sql } from "kysely";

/**
 * Leases, retries, scheduling and append-only durable steps. Scheduling state lives in
 * columns beside the task document, so the document stays in the Rust crate's exact format.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const columns: [string, "integer" | "bigint" | "text", string | number | null][] = [
    ["priority", "integer", 0],
    ["run_at", "bigint", 0],
    ["runs", "integer", 0],
    ["max_attempts", "integer", 3],
    ["lease_owner", "text", null],
    ["lease_token", "text", null],
    ["lease_expires_at", "bigint", null],
    ["last_error", "text", null],
    ["idempotency_key", "text", null],
    ["cancel_requested", "integer", 0],
    ["steps_in_document", "integer", 0],
  ];
  for (const [name, type, fallback] of columns) {
    await db.schema
      .alterTable("tasks")
      .addColumn(name, type, (c) => (fallback === null ? c : c.notNull().defaultTo(fallback)))
      .execute();
  }
  const pending = sql<boolean>`${sql.ref("status")} = ${sql.lit("pending")}`;
  await db.schema
    .createIndex("tasks_idempotency_key")
    .unique()
    .on("tasks")
    .column("idempotency_key")
    .where(sql.ref("idempotency_key"), "is not", null)
    .execute();
  // claim: the best due pending task of one kind, or of any kind, is the first index entry.
  await db.schema
    .createIndex("tasks_claim_kind")
    .on("tasks")
    .columns(["kind", "priority desc", "run_at", "id"])
    .where(pending)
    .execute();
  await db.schema
    .createIndex("tasks_claim_any")
    .on("tasks")
    .columns(["priority desc", "run_at", "id"])
    .where(pending)
    .execute();
  // nextWakeAt: the earliest due time among waiting tasks.
  await db.schema.createIndex("tasks_due").on("tasks").column("run_at").where(pending).execute();
  // sweep: running tasks whose lease has expired, soonest first.
  await db.schema
    .createIndex("tasks_lease_expiry")
    .on("tasks")
    .column("lease_expires_at")
    .where(sql.ref("status"), "=", sql.lit("running"))
    .execute();

  // Steps a running task has persisted since its document was last written: appending one is
  // a single small insert, whatever the number of steps before it.
  await db.schema
    .createTable("task_steps")
    .addColumn("task_id", "text", (c) => c.notNull().references("tasks.id"))
    .addColumn("ordinal", "integer", (c) => c.notNull())
    .addColumn("data", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("task_steps_pk", ["task_id", "ordinal"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("task_steps").execute();
  for (const index of [
    "tasks_idempotency_key",
    "tasks_claim_kind",
    "tasks_claim_any",
    "tasks_due",
    "tasks_lease_expiry",
  ]) {
    await db.schema.dropIndex(index).execute();
  }
  for (const column of [
    "priority",
    "run_at",
    "runs",
    "max_attempts",
    "lease_owner",
    "lease_token",
    "lease_expires_at",
    "last_error",
    "idempotency_key",
    "cancel_requested",
    "steps_in_document",
  ]) {
    await db.schema.alterTable("tasks").dropColumn(column).execute();
  }
}
