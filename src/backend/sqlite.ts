/**
 * The SQLite adapter: one file (or `:memory:`), WAL, prepared statements compiled from the
 * Kysely schema, and every driver failure translated into a RegistryError.
 */
import Database from "better-sqlite3";
import { Kysely, Migrator, SqliteDialect } from "kysely";
import { MIGRATIONS, migrationProvider } from "../../migrations/index.js";
import {
  BusyError,
  ClosedError,
  isRegistryError,
  ReadOnlyError,
  type RegistryError,
  SchemaVersionError,
  StorageError,
} from "../errors.js";
import type { TaskId } from "../ids.js";
import { PreparedQuery, param } from "../sql/prepared.js";
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE, type RegistryTables } from "../sql/tables.js";
import type { RegistryBackend, TaskRow } from "./port.js";

export const DURABILITY_MODES = ["full", "normal"] as const;
export type Durability = (typeof DURABILITY_MODES)[number];

export interface SqliteBackendOptions {
  /**
   * `full` (default): every resolved write has been fsynced, so it survives power loss.
   * `normal`: writes survive a crash of the process; the last ones may roll back on power loss.
   */
  readonly durability?: Durability;
  /** How long a write waits for another connection's lock before a BusyError. Default 10 s. */
  readonly busyTimeoutMs?: number;
  /** Open without writing anything; every write fails with a ReadOnlyError. */
  readonly readOnly?: boolean;
}

interface Statements {
  readonly get: PreparedQuery<{ id: string }, { data: string }>;
  readonly put: PreparedQuery<{ id: string; kind: string; status: string; data: string; now: number }>;
  readonly listFrom: PreparedQuery<{ from: string }, { id: string }>;
  readonly cas: PreparedQuery<{
    id: string;
    expected: string;
    kind: string;
    status: string;
    data: string;
    now: number;
  }>;
  readonly pendingOfKind: PreparedQuery<{ kind: string; limit: number }, { data: string }>;
  readonly pendingAll: PreparedQuery<{ limit: number }, { data: string }>;
}

export class SqliteBackend implements RegistryBackend {
  readonly #db: Database.Database;
  readonly #ownsDatabase: boolean;
  readonly #statements: Statements;
  readonly #busyTimeoutMs: number;
  #closed = false;

  private constructor(
    db: Database.Database,
    ownsDatabase: boolean,
    statements: Statements,
    busyTimeoutMs: number,
  ) {
    this.#db = db;
    this.#ownsDatabase = ownsDatabase;
    this.#statements = statements;
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  /**
   * Open (creating and migrating as needed) the registry in a file, `:memory:`, or a
   * better-sqlite3 Database the application already has (which `close()` then leaves open).
   */
  static async open(
    target: string | Database.Database,
    options: SqliteBackendOptions = {},
  ): Promise<SqliteBackend> {
    const busyTimeoutMs = options.busyTimeoutMs ?? 10_000;
    const ownsDatabase = typeof target === "string";
    let db: Database.Database;
    try {
      db =
        typeof target === "string"
          ? new Database(target, { readonly: options.readOnly ?? false, fileMustExist: false })
          : target;
    } catch (error) {
      throw toRegistryError(error, `cannot open ${String(target)}`);
    }
    try {
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
        configure(db, options.durability ?? "full");
        if (pending.length > 0) await retryWhileBusy(busyTimeoutMs, () => migrate(db));
      }
      return new SqliteBackend(db, ownsDatabase, prepareStatements(db), busyTimeoutMs);
    } catch (error) {
      if (ownsDatabase) db.close();
      throw toRegistryError(error, "cannot open the registry database");
    }
  }

  get(id: TaskId): Promise<string | undefined> {
    return this.#run("get", () => this.#statements.get.get({ id })?.data);
  }

  put(id: TaskId, row: TaskRow): Promise<void> {
    return this.#run("put", () => {
      this.#statements.put.run({ id, ...row, now: Date.now() });
    });
  }

  list(prefix: string): Promise<TaskId[]> {
    return this.#run("list", () => {
      const ids: TaskId[] = [];
      // A range scan from the prefix stops at the first id past it: exact, unlike LIKE,
      // for which `_` in `task_` would be a wildcard.
      for (const { id } of this.#statements.listFrom.iterate({ from: prefix })) {
        if (!id.startsWith(prefix)) break;
        ids.push(id as TaskId);
      }
      return ids;
    });
  }

  cas(id: TaskId, expected: string, next: TaskRow): Promise<boolean> {
    return this.#run(
      "cas",
      () => this.#statements.cas.run({ id, expected, ...next, now: Date.now() }).changes === 1,
    );
  }

  pending(kind: string, limit = -1): Promise<string[]> {
    return this.#run("pending", () => {
      const rows =
        kind === ""
          ? this.#statements.pendingAll.all({ limit })
          : this.#statements.pendingOfKind.all({ kind, limit });
      return rows.map((row) => row.data);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsDatabase) this.#db.close();
  }

  /** Run one synchronous statement, retrying while another connection holds the lock. */
  #run<T>(action: string, operation: () => T): Promise<T> {
    return retryWhileBusy(this.#busyTimeoutMs, () => {
      if (this.#closed) throw new ClosedError();
      try {
        return operation();
      } catch (error) {
        throw isBusy(error) ? error : toRegistryError(error, `${action} failed`);
      }
    });
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

function configure(db: Database.Database, durability: Durability): void {
  db.pragma("journal_mode = WAL");
  db.pragma(`synchronous = ${durability === "full" ? "FULL" : "NORMAL"}`);
  // Waiting happens in retryWhileBusy, asynchronously, so the event loop is never blocked.
  db.pragma("busy_timeout = 0");
}

async function migrate(db: Database.Database): Promise<void> {
  const migrator = new Migrator({
    db: kyselyFor(db),
    provider: migrationProvider,
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
  const { error } = await migrator.migrateToLatest();
  if (error !== undefined) throw error;
}

/** A Kysely instance used only to build SQL and run migrations; never destroyed (that would close `db`). */
function kyselyFor(db: Database.Database): Kysely<RegistryTables> {
  return new Kysely<RegistryTables>({ dialect: new SqliteDialect({ database: db }) });
}

function prepareStatements(db: Database.Database): Statements {
  const k = kyselyFor(db);
  const pendingBase = k
    .selectFrom("tasks")
    .select("data")
    .where("status", "=", "pending")
    .orderBy("id")
    .limit(param<number>("limit"));
  return {
    get: new PreparedQuery(db, k.selectFrom("tasks").select("data").where("id", "=", param<string>("id"))),
    put: new PreparedQuery(
      db,
      k
        .insertInto("tasks")
        .values({
          id: param("id"),
          kind: param("kind"),
          status: param("status"),
          data: param("data"),
          created_at: param("now"),
          updated_at: param("now"),
        })
        .onConflict((oc) =>
          oc.column("id").doUpdateSet((eb) => ({
            kind: eb.ref("excluded.kind"),
            status: eb.ref("excluded.status"),
            data: eb.ref("excluded.data"),
            updated_at: eb.ref("excluded.updated_at"),
          })),
        ),
    ),
    listFrom: new PreparedQuery(
      db,
      k.selectFrom("tasks").select("id").where("id", ">=", param<string>("from")).orderBy("id"),
    ),
    cas: new PreparedQuery(
      db,
      k
        .updateTable("tasks")
        .set({
          kind: param("kind"),
          status: param("status"),
          data: param("data"),
          updated_at: param("now"),
        })
        .where("id", "=", param<string>("id"))
        .where("data", "=", param<string>("expected")),
    ),
    pendingOfKind: new PreparedQuery(db, pendingBase.where("kind", "=", param<string>("kind"))),
    pendingAll: new PreparedQuery(db, pendingBase),
  };
}

function sqliteCode(error: unknown): string | undefined {
  return error instanceof Database.SqliteError ? error.code : undefined;
}

function isBusy(error: unknown): boolean {
  return sqliteCode(error)?.startsWith("SQLITE_BUSY") === true;
}

/** Retry `operation` with jittered backoff while SQLite reports the database busy. */
async function retryWhileBusy<T>(timeoutMs: number, operation: () => T | Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let delayMs = 1; ; delayMs = Math.min(delayMs * 2, 20)) {
    try {
      return await operation();
    } catch (error) {
      if (!isBusy(error)) throw error;
      if (Date.now() >= deadline) {
        throw new BusyError(`the database stayed locked by another connection for ${timeoutMs} ms`, {
          cause: error,
        });
      }
      await new Promise((resolve) => setTimeout(resolve, delayMs * (0.5 + Math.random())));
    }
  }
}

/** Translate a driver error; RegistryErrors pass through unchanged. */
function toRegistryError(error: unknown, context: string): RegistryError {
  if (isRegistryError(error)) return error;
  const code = sqliteCode(error);
  const detail = error instanceof Error ? error.message : String(error);
  if (code?.startsWith("SQLITE_READONLY")) {
    return new ReadOnlyError(`${context}: the database is read-only (${detail})`, { cause: error });
  }
  if (code?.startsWith("SQLITE_BUSY")) {
    return new BusyError(`${context}: the database is locked (${detail})`, { cause: error });
  }
  if (code === "SQLITE_NOTADB") {
    return new StorageError(`${context}: the file is not a SQLite database`, { cause: error });
  }
  return new StorageError(`${context}: ${detail}`, { cause: error });
}
