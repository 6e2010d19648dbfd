/**
 * Apply migrations to a file the way open does (Kysely's Migrator inside one immediate
 * transaction), without the adapter: tests of a migration's SQL alone, and files in the layout
 * an earlier version wrote.
 */
import Database from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect } from "kysely";
import { MIGRATIONS } from "../../migrations/index.js";
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE } from "../../src/backend/sqlite/tables.js";
import { tempDbPath } from "./backends.js";

/** Apply the file's pending migrations: every one, or those before `before`. */
export async function migrateFile(file: string, before?: string): Promise<void> {
  const db = new Database(file, { fileMustExist: true });
  try {
    await migrate(db, before);
  } finally {
    db.close();
  }
}

/**
 * A new file in the layout of the migrations before `first`, as an earlier version left it:
 * its rows are written by raw SQL in that layout, and the registry's open applies `first` and
 * every later migration.
 */
export async function fileBefore(first: string): Promise<string> {
  const file = tempDbPath();
  new Database(file).close();
  await migrateFile(file, first);
  return file;
}

async function migrate(db: Database.Database, before: string | undefined): Promise<void> {
  const migrations = Object.fromEntries(
    Object.entries(MIGRATIONS).filter(([name]) => before === undefined || name < before),
  );
  try {
    db.exec("BEGIN IMMEDIATE");
    const { error } = await new Migrator({
      db: new Kysely<unknown>({ dialect: new SqliteDialect({ database: db }) }),
      provider: { getMigrations: async () => migrations },
      migrationTableName: MIGRATION_TABLE,
      migrationLockTableName: MIGRATION_LOCK_TABLE,
    }).migrateToLatest();
    if (error !== undefined) throw error;
    db.exec("COMMIT");
  } finally {
    if (db.inTransaction) db.exec("ROLLBACK");
  }
}
