import { type Kysely, sql } from "kysely";

/** The seed's task store: one row per task, its document beside the columns we index. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("tasks")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) =>
      c.notNull().check(sql`status in ('pending', 'running', 'done', 'failed')`),
    )
    .addColumn("data", "text", (c) => c.notNull())
    .addColumn("created_at", "bigint", (c) => c.notNull())
    .addColumn("updated_at", "bigint", (c) => c.notNull())
    .execute();
  // "pending tasks of kind K, oldest first" and "all pending, oldest first" are range scans.
  // Partial indexes hold pending tasks only: a finished task costs no index maintenance, and
  // a status change touches a few small indexes instead of every one.
  await db.schema
    .createIndex("tasks_pending_kind_id")
    .on("tasks")
    .columns(["kind", "id"])
    .where(sql.ref("status"), "=", sql.lit("pending"))
    .execute();
  await db.schema
    .createIndex("tasks_pending_id")
    .on("tasks")
    .column("id")
    .where(sql.ref("status"), "=", sql.lit("pending"))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("tasks").execute();
}
