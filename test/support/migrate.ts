/**
 * Apply the pending migrations to a file the way open does (Kysely's Migrator inside one
 * immediate transaction), without the adapter: tests of a migration's SQL alone.
 */
import Database from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect } from "kysely";
import { migrationProvider } from "../../migrations/index.js";
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE } from "../../src/backend/sqlite/tables.js";

export async function migrateFile(file: string): Promise<void> {
  const db = new Database(file, { fileMustExist: true });
  try {
    db.exec("BEGIN IMMEDIATE");
    const { error } = await new Migrator({
      db: new Kysely<unknown>({ dialect: new SqliteDialect({ database: db }) }),
      provider: migrationProvider,
      migrationTableName: MIGRATION_TABLE,
      migrationLockTableName: MIGRATION_LOCK_TABLE,
    }).migrateToLatest();
    if (error !== undefined) throw error;
    db.exec("COMMIT");
  } finally {
    if (db.inTransaction) db.exec("ROLLBACK");
    db.close();
  }
}
