/**
 * The Kysely view of the schema that `migrations/` builds: the single source of truth for
 * every SQL statement the SQL adapters compile. Times are epoch milliseconds.
 */
import type Database from "better-sqlite3";
import { type Generated, Kysely, SqliteDialect } from "kysely";
import type { TaskStatus } from "../../wire/schema.js";

export interface TasksTable {
  /** The rowid, by which task_steps and task_steps_length key a task; in insertion order. */
  seq: Generated<number>;
  /** The task id, in the unique index tasks_id. */
  id: string;
  kind: string;
  /** Authoritative, spliced into the document on read (a quarantined row's: see quarantined_at). */
  status: TaskStatus;
  /** Higher runs first. */
  priority: number;
  /** Not claimed before this time. */
  run_at: number;
  /** How many times the task was claimed (the document's `attempts` counts checkpoints). */
  runs: number;
  max_attempts: number;
  /** Counts the task's leases; the current lease's token is its decimal text. */
  fence: number;
  /** The lease holder; null when the task holds no lease. */
  lease_owner: string | null;
  lease_expires_at: number | null;
  /** 1 once cancel() was asked for a running task. */
  cancel_requested: number;
  /** Steps inside `data`'s checkpoint; appended ones in task_steps follow them. */
  steps_in_document: number;
  created_at: number;
  updated_at: number;
  /**
   * The `started_at` of the checkpoint a run created because the document had none; null
   * when the document's own checkpoint stands.
   */
  run_started_at: number | null;
  /** The checkpoint's `finished_at` as set by the run; null: the document's own. */
  run_finished_at: number | null;
  idempotency_key: string | null;
  /**
   * When the document or last error was found not to decode; null unless quarantined. A
   * quarantined row's `status` is `failed`, so no queue index holds it.
   */
  quarantined_at: number | null;
  /** Why it was quarantined (the decoding error); null unless quarantined. */
  quarantine_reason: string | null;
  /** The status it had when quarantined (its document's, as far as the columns knew). */
  quarantined_status: TaskStatus | null;
  /** The last failure, as CruxErr JSON. */
  last_error: string | null;
  /** The checkpoint's `value` JSON as set by the run; null: the document's own. */
  run_value: string | null;
  /**
   * The task document in the Rust crate's JSON format, as last written whole; run state in
   * the columns above is spliced into it on read. The last column, so statements that touch
   * only the others never decode it.
   */
  data: string;
}

/** Steps appended since the task document was last written, spliced into its checkpoint on read. */
export interface TaskStepsTable {
  /** tasks.seq */
  task: number;
  ordinal: number;
  data: string;
}

/** A task's appended steps' total length, while it has some: see MAX_DOCUMENT_LENGTH. */
export interface TaskStepsLengthTable {
  /** tasks.seq */
  task: number;
  /** UTF-16 units of the steps' JSON, one more each for its comma. */
  length: number;
}

export interface RegistryTables {
  tasks: TasksTable;
  task_steps: TaskStepsTable;
  task_steps_length: TaskStepsLengthTable;
}

/** Names of the migration bookkeeping tables, apart from an application's own Kysely ones. */
export const MIGRATION_TABLE = "cruxx_migration";
export const MIGRATION_LOCK_TABLE = "cruxx_migration_lock";

/** A Kysely instance used only to build SQL and run migrations; never destroyed (that would close `db`). */
export function kyselyFor(db: Database.Database): Kysely<RegistryTables> {
  return new Kysely<RegistryTables>({ dialect: new SqliteDialect({ database: db }) });
}
