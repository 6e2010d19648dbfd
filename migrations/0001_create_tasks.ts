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
  await db.schema
    .createIndex("tasks_status_kind_id")
    .on("tasks")
    .columns(["status", "kind", "id"])
    .execute();
  await db.schema.createIndex("tasks_status_id").on("tasks").columns(["status", "id"]).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("tasks").execute();
}
