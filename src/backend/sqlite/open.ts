/**
 * Opening the registry's database: the file (or an application's Database), its pragmas per
 * durability, the schema check and the migrations.
 */
import { realpathSync } from "node:fs";
import Database from "better-sqlite3";
import { Migrator } from "kysely";
import { z } from "zod";
import { MIGRATIONS, migrationProvider } from "../../../migrations/index.js";
import { ReadOnlyError, SchemaVersionError } from "../../errors.js";
import { validate } from "../../wire/codec.js";
import type { BetterSqlite3Database } from "./database.js";
import { retryWhileBusy, toRegistryError } from "./errors.js";
import { DURABILITY_MODES, type Durability, type SqliteBackendOptions } from "./options.js";
import { kyselyFor, MIGRATION_LOCK_TABLE, MIGRATION_TABLE } from "./tables.js";

const backendOptionsSchema = z.object({
  durability: z.enum(DURABILITY_MODES).default("full"),
  busyTimeoutMs: z.number().int().min(0).max(2_147_483_647).default(10_000),
  readOnly: z.boolean().default(false),
});

/** A database opened, configured and migrated, ready for a SqliteConnection. */
export interface OpenedDatabase {
  readonly db: Database.Database;
  /** The database file, absolute, symlinks followed; none in memory. */
  readonly file: string | undefined;
  readonly busyTimeoutMs: number;
  /** Commits do not fsync: the connection must flush the WAL itself, off the event loop. */
  readonly fsyncOffThread: boolean;
  /** Closes a Database we opened; puts back the settings we changed on an application's own. */
  readonly release: () => void;
}

/** Open the registry's database: see SqliteBackend.open. */
export async function openDatabase(
  target: string | BetterSqlite3Database,
  options: SqliteBackendOptions = {},
): Promise<OpenedDatabase> {
  const { durability, busyTimeoutMs } = validate(backendOptionsSchema, options, "$");
  const ownsDatabase = typeof target === "string";
  let db: Database.Database;
  try {
    db =
      typeof target === "string"
        ? new Database(target, { readonly: options.readOnly ?? false, fileMustExist: false })
        : (target as Database.Database); // its public type names only the part used here
  } catch (error) {
    throw toRegistryError(error, `cannot open ${String(target)}`);
  }
  // Resolved now, before the process can change directory: the WAL watch and fsync and
  // the checkpoint thread open the file again by this name.
  const file = databaseFile(db);
  let restoreSettings = () => {};
  let fsyncOffThread = false;
  const release = () => {
    if (ownsDatabase) db.close();
    else restoreSettings();
  };
  try {
    if (!ownsDatabase) restoreSettings = settingsRestorer(db);
    const readOnly = options.readOnly === true || db.readonly;
    const pending = pendingMigrations(db);
    if (readOnly) {
      if (pending.length > 0) {
        throw new ReadOnlyError(
          `the database needs migration ${pending.join(", ")} but was opened read-only`,
        );
      }
      db.pragma("query_only = true");
    } else {
      // Several processes opening a new file at once contend for the switch to WAL too.
      // An application's own Database keeps fsyncing in its commits: its own writes,
      // which do not pass through here, must stay as durable as it set them up to be.
      const offThread = durability === "full" && ownsDatabase;
      const wal = await retryWhileBusy(busyTimeoutMs, () => configure(db, durability, offThread));
      fsyncOffThread = offThread && wal;
      if (pending.length > 0) await retryWhileBusy(busyTimeoutMs, () => migrate(db));
    }
    return { db, file, busyTimeoutMs, fsyncOffThread, release };
  } catch (error) {
    release();
    throw toRegistryError(error, "cannot open the registry database");
  }
}

/**
 * The database's file as an absolute path, symlinks followed (SQLite keeps the WAL beside the
 * real file); none in memory.
 */
function databaseFile(db: Database.Database): string | undefined {
  if (db.memory || db.name === "") return undefined;
  try {
    return realpathSync(db.name);
  } catch {
    return undefined; // the file is gone (deleted while open): nothing to watch or flush
  }
}

/** Names of our migrations not yet applied; refuses a file from a newer or foreign schema. */
function pendingMigrations(db: Database.Database): string[] {
  const tables = new Set(
    (
      db.prepare("select name from sqlite_master where type = 'table'").all() as {
        name: string;
      }[]
    ).map((row) => row.name),
  );
  const known = Object.keys(MIGRATIONS).sort();
  if (!tables.has(MIGRATION_TABLE)) {
    if (tables.has("tasks")) {
      throw new SchemaVersionError(
        "the database has a `tasks` table that cruxx-registry did not create; refusing to touch it",
      );
    }
    return known;
  }
  const applied = (
    db.prepare(`select name from ${MIGRATION_TABLE}`).all() as { name: string }[]
  ).map((row) => row.name);
  const unknown = applied.filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    throw new SchemaVersionError(
      `the database was written by a newer cruxx-registry (unknown migration ${unknown.join(", ")}); upgrade cruxx-registry to open it`,
    );
  }
  return known.filter((name) => !applied.includes(name));
}

/** A function that puts back the per-connection settings `open` may change. */
function settingsRestorer(db: Database.Database): () => void {
  const saved = (["synchronous", "busy_timeout", "query_only", "wal_autocheckpoint"] as const).map(
    (name) => [name, db.pragma(name, { simple: true })] as const,
  );
  return () => {
    if (!db.open) return;
    for (const [name, value] of saved) db.pragma(`${name} = ${Number(value)}`);
  };
}

/**
 * WAL, and the commit's fsync per durability. Says whether the file is in WAL mode (an
 * in-memory or anonymous temporary database is not, and has nothing to flush).
 */
function configure(
  db: Database.Database,
  durability: Durability,
  fsyncOffThread: boolean,
): boolean {
  const wal = db.pragma("journal_mode = WAL", { simple: true }) === "wal";
  // With fsyncOffThread on a WAL file, WalSync does the commit's fsync, off the event loop.
  const fsyncInCommit = durability === "full" && !(wal && fsyncOffThread);
  db.pragma(`synchronous = ${fsyncInCommit ? "FULL" : "NORMAL"}`);
  // Waiting happens in retryWhileBusy, asynchronously, so the event loop is never blocked.
  db.pragma("busy_timeout = 0");
  return wal;
}

/**
 * Apply every pending migration in one immediate transaction: two processes opening a new
 * file at once serialize here (the loser retries, then finds nothing to do), and a crash
 * mid-migration leaves the file as it was. Kysely's SQLite adapter takes no lock of its own.
 */
async function migrate(db: Database.Database): Promise<void> {
  db.exec("BEGIN IMMEDIATE");
  try {
    if (pendingMigrations(db).length > 0) {
      const migrator = new Migrator({
        db: kyselyFor(db),
        provider: migrationProvider,
        migrationTableName: MIGRATION_TABLE,
        migrationLockTableName: MIGRATION_LOCK_TABLE,
      });
      const { error } = await migrator.migrateToLatest();
      if (error !== undefined) throw error;
    }
    db.exec("COMMIT");
  } catch (error) {
    if (db.inTransaction) db.exec("ROLLBACK");
    throw error;
  }
}
