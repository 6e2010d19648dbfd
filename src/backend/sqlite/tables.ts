/**
 * The Kysely view of the schema that `migrations/` builds: the single source of truth for
 * every SQL statement the SQL adapters compile. Times are epoch milliseconds.
 */
import type Database from "better-sqlite3";
import { Kysely, SqliteDialect } from "kysely";
import type { TaskStatus } from "../../wire/schema.js";

export interface TasksTable {
  id: string;
  kind: string;
  status: TaskStatus;
  /** The task document in the Rust crate's JSON format. */
  data: string;
  created_at: number;
  updated_at: number;
  /** Higher runs first. */
  priority: number;
  /** Not claimed before this time. */
  run_at: number;
  /** How many times the task was claimed (the document's `attempts` counts checkpoints). */
  runs: number;
  max_attempts: number;
  lease_owner: string | null;
  lease_token: string | null;
  lease_expires_at: number | null;
  /** The last failure, as CruxErr JSON. */
  last_error: string | null;
  idempotency_key: string | null;
  /** 1 once cancel() was asked for a running task. */
  cancel_requested: number;
  /** Steps inside `data`'s checkpoint; appended ones in task_steps follow them. */
  steps_in_document: number;
  /**
   * When the document or last error was found not to decode; null unless quarantined. A
   * quarantined row's `status` is `failed`, so no queue index holds it.
   */
  quarantined_at: number | null;
  /** Why it was quarantined (the decoding error); null unless quarantined. */
  quarantine_reason: string | null;
  /** The status it had when quarantined (its document's, as far as the columns knew). */
  quarantined_status: TaskStatus | null;
}

/** Steps appended since the task document was last written, spliced into its checkpoint on read. */
export interface TaskStepsTable {
  task_id: string;
  ordinal: number;
  data: string;
}

/** A task's appended steps' total length, while it has some: see MAX_DOCUMENT_LENGTH. */
export interface TaskStepsLengthTable {
  task_id: string;
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
