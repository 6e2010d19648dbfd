import { type Kysely, sql } from "kysely";

/**
 * The total length of each task's appended steps, kept beside them so that an append checks
 * the document budget (MAX_DOCUMENT_LENGTH) without reading the steps before it. A row of
 * its own: updating it rewrites a few bytes, where a column of `tasks` would rewrite the
 * document. It exists while task_steps holds steps of the task.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("task_steps_length")
    .addColumn("task_id", "text", (c) => c.primaryKey().references("tasks.id"))
    // UTF-16 units of the steps' JSON, one more each for the comma that splices it in.
    .addColumn("length", "integer", (c) => c.notNull())
    .execute();
  // Steps appended before this migration: their UTF-8 bytes, never fewer than their UTF-16
  // units, so the budget is kept (a little early for such a task) without decoding them.
  await sql`insert into task_steps_length (task_id, length)
    select task_id, sum(length(cast(data as blob)) + 1) from task_steps group by task_id`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("task_steps_length").execute();
}
