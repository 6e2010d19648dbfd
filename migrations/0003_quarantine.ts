import { type Kysely, type RawBuilder, sql } from "kysely";

/**
 * Quarantine: a row whose stored document or last error does not decode is flagged, kept byte
 * for byte, and left out of every queue path. The partial indexes those paths search are
 * rebuilt to hold only rows that are not quarantined, so skipping them costs nothing: a claim
 * still finds the best due task as the first entry of its index. The flag is compared with
 * `= 0` (not `is null`): SQLite then still answers the claim probe from the index alone.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  // 0 or 1, written only by the adapter's quarantine and release statements: no CHECK to
  // evaluate on every insert.
  await db.schema
    .alterTable("tasks")
    .addColumn("quarantined", "integer", (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable("tasks").addColumn("quarantine_reason", "text").execute();
  await db.schema.alterTable("tasks").addColumn("quarantined_at", "bigint").execute();
  await rebuildIndexes(
    db,
    (status) => sql<boolean>`${statusIs(status)} and ${sql.ref("quarantined")} = ${sql.lit(0)}`,
  );
  // quarantined(): the quarantined rows, in the order they were quarantined; empty as a rule.
  await db.schema
    .createIndex("tasks_quarantined")
    .on("tasks")
    .columns(["quarantined_at", "id"])
    .where(sql.ref("quarantined"), "=", sql.lit(1))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex("tasks_quarantined").execute();
  await rebuildIndexes(db, statusIs);
  for (const column of ["quarantined_at", "quarantine_reason", "quarantined"]) {
    await db.schema.alterTable("tasks").dropColumn(column).execute();
  }
}

type Status = "pending" | "running";

/** The partial indexes of migrations 0001 and 0002 that queue paths search, as they made them. */
const INDEXES: readonly { name: string; columns: string[]; status: Status }[] = [
  { name: "tasks_pending_kind_id", columns: ["kind", "id"], status: "pending" },
  { name: "tasks_pending_id", columns: ["id"], status: "pending" },
  {
    name: "tasks_claim_kind",
    columns: ["kind", "priority desc", "run_at", "id"],
    status: "pending",
  },
  { name: "tasks_claim_any", columns: ["priority desc", "run_at", "id"], status: "pending" },
  { name: "tasks_due", columns: ["run_at"], status: "pending" },
  { name: "tasks_lease_expiry", columns: ["lease_expires_at"], status: "running" },
];

/** Each of INDEXES again, over the rows `where(its status)` selects. */
async function rebuildIndexes(
  db: Kysely<unknown>,
  where: (status: Status) => RawBuilder<boolean>,
): Promise<void> {
  for (const index of INDEXES) {
    await db.schema.dropIndex(index.name).execute();
    await db.schema
      .createIndex(index.name)
      .on("tasks")
      .columns(index.columns)
      .where(where(index.status))
      .execute();
  }
}

function statusIs(status: Status): RawBuilder<boolean> {
  return sql<boolean>`${sql.ref("status")} = ${sql.lit(status)}`;
}
