import { type Kysely, sql } from "kysely";

/**
 * Quarantine: a row whose stored document or last error does not decode is set apart, its
 * document and last error kept byte for byte. Its `status` column becomes `failed`, which no
 * queue index holds (they hold pending or running rows), so the queue paths skip it with the
 * same indexes and statements as before and no work per row; its own status is kept in
 * `quarantined_status`. A new document (put, cas, repair) releases it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [name, type] of [
    ["quarantined_at", "bigint"],
    ["quarantine_reason", "text"],
    ["quarantined_status", "text"],
  ] as const) {
    await db.schema.alterTable("tasks").addColumn(name, type).execute();
  }
  // quarantined(): the quarantined rows, in the order they were quarantined; empty as a rule.
  await db.schema
    .createIndex("tasks_quarantined")
    .on("tasks")
    .columns(["quarantined_at", "id"])
    .where(sql.ref("quarantined_at"), "is not", null)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex("tasks_quarantined").execute();
  // Released as they are: each gets its own status back.
  await sql`update tasks set status = quarantined_status where quarantined_at is not null`.execute(
    db,
  );
  for (const column of ["quarantined_status", "quarantine_reason", "quarantined_at"]) {
    await db.schema.alterTable("tasks").dropColumn(column).execute();
  }
}
