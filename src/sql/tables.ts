/**
 * The Kysely view of the schema that `migrations/` builds: the single source of truth for
 * every SQL statement the SQL adapters compile. Times are epoch milliseconds.
 */
import type { TaskStatus } from "../wire/schema.js";

export interface TasksTable {
  id: string;
  kind: string;
  status: TaskStatus;
  /** The task document in the Rust crate's JSON format. */
  data: string;
  created_at: number;
  updated_at: number;
}

export interface RegistryTables {
  tasks: TasksTable;
}

/** Names of the migration bookkeeping tables, apart from an application's own Kysely ones. */
export const MIGRATION_TABLE = "cruxx_migration";
export const MIGRATION_LOCK_TABLE = "cruxx_migration_lock";
