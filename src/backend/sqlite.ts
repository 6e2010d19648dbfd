/**
 * The SQLite adapter: one file (or `:memory:`), WAL, prepared statements compiled from the
 * Kysely schema, and every driver failure translated into a RegistryError.
 */
import { type FSWatcher, realpathSync, watch } from "node:fs";
import Database from "better-sqlite3";
import {
  type Compilable,
  Kysely,
  Migrator,
  type Selectable,
  type SelectQueryBuilder,
  SqliteDialect,
  sql,
} from "kysely";
import { z } from "zod";
import { MIGRATIONS, migrationProvider } from "../../migrations/index.js";
import {
  BusyError,
  ClosedError,
  isRegistryError,
  NotFoundError,
  ReadOnlyError,
  type RegistryError,
  SchemaVersionError,
  StorageError,
} from "../errors.js";
import type { TaskId } from "../ids.js";
import {
  appendedLength,
  canAppend,
  fence,
  overwriteDocument,
  repairDocument,
  stepsInDocument,
} from "../lifecycle.js";
import { BackgroundCheckpointer } from "../sql/checkpointer.js";
import { GroupCommit } from "../sql/group-commit.js";
import { PreparedQuery, param } from "../sql/prepared.js";
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE, type RegistryTables } from "../sql/tables.js";
import { WalSync } from "../sql/wal-sync.js";
import { validate } from "../wire/codec.js";
import { claimOrder } from "./memory.js";
import type {
  AppendResult,
  Batch,
  Change,
  ChangeFeed,
  KindFilter,
  Quarantined,
  RegistryBackend,
  SeedWrite,
  StepRecord,
  StoredDocument,
  SweepFilter,
  TaskRow,
  TaskState,
} from "./port.js";
import { changeEach, quarantinedError, spliceStored } from "./quarantine.js";
import type { BetterSqlite3Database } from "./sqlite-database.js";

export const DURABILITY_MODES = ["full", "normal"] as const;
export type Durability = (typeof DURABILITY_MODES)[number];

export interface SqliteBackendOptions {
  /**
   * `full` (default): every resolved write has been fsynced, so it survives power loss. The
   * fsync runs off the event loop, after the commit: other connections may read a write a
   * moment before it resolves.
   * `normal`: writes survive a crash of the process; the last ones may roll back on power loss.
   */
  readonly durability?: Durability;
  /** How long a write waits for another connection's lock before a BusyError. Default 10 s. */
  readonly busyTimeoutMs?: number;
  /** Open without writing anything; every write fails with a ReadOnlyError. */
  readonly readOnly?: boolean;
}

/** The columns of a task's state: quarantine is set only by quarantine(), and cleared by #write. */
type Columns = Omit<
  Selectable<RegistryTables["tasks"]>,
  "quarantined_at" | "quarantine_reason" | "quarantined_status"
>;

/** Commits after which a connection hands its WAL checkpoints to a background thread. */
const CHECKPOINT_THREAD_AFTER_COMMITS = 200;
/**
 * A row as read: its columns, whether steps were appended to it since it was written, and,
 * read by id, when it was quarantined (the queue paths never select a quarantined row).
 */
type StoredRow = Columns & {
  readonly has_steps: number;
  readonly quarantined_at?: number | null;
};

/** A task as read inside a transaction: `appended` says task_steps rows back its document. */
interface Loaded {
  readonly state: TaskState;
  readonly appended: boolean;
  readonly quarantined: boolean;
}

const NO_BATCH: Batch = { changed: [], quarantined: [] };

const backendOptionsSchema = z.object({
  durability: z.enum(DURABILITY_MODES).default("full"),
  busyTimeoutMs: z.number().int().min(0).max(2_147_483_647).default(10_000),
  readOnly: z.boolean().default(false),
});

export class SqliteBackend implements RegistryBackend {
  readonly #db: Database.Database;
  readonly #ownsDatabase: boolean;
  readonly #sql: Statements;
  readonly #busyTimeoutMs: number;
  /** Puts back the connection settings we changed on an application's own Database. */
  readonly #restoreSettings: () => void;
  readonly #writer: GroupCommit;
  /** The WAL file, beside the real database file; none in memory. */
  readonly #walPath: string | undefined;
  /** In `full` durability on a file we opened: flushes the WAL after commits, off the event loop. */
  readonly #walSync: WalSync | undefined;
  readonly #changeListeners = new Set<() => void>();
  #commits = 0;
  #checkpointer: BackgroundCheckpointer | undefined;
  #watcher: FSWatcher | undefined;
  #closed = false;

  private constructor(
    db: Database.Database,
    file: string | undefined,
    ownsDatabase: boolean,
    busyTimeoutMs: number,
    restoreSettings: () => void,
    fsyncOffThread: boolean,
  ) {
    this.#db = db;
    this.#walPath = file === undefined ? undefined : `${file}-wal`;
    const walSync = fsyncOffThread && this.#walPath ? new WalSync(this.#walPath) : undefined;
    // No WAL to flush after all: SQLite must fsync in the commit again.
    if (fsyncOffThread && walSync === undefined) db.pragma("synchronous = FULL");
    this.#walSync = walSync;
    this.#ownsDatabase = ownsDatabase;
    this.#sql = prepareStatements(db);
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#restoreSettings = restoreSettings;
    this.#writer = new GroupCommit(db, {
      isBusy,
      busyTimeoutMs,
      onTimeout: (cause) =>
        new BusyError(`the database stayed locked by another connection for ${busyTimeoutMs} ms`, {
          cause,
        }),
      translate: (error) => toRegistryError(error, "write failed"),
      ...(walSync && {
        durable: () =>
          walSync.durable().catch((cause) => {
            throw new StorageError(
              "the write was committed, but flushing the WAL to disk failed; it may not survive a power loss",
              { cause },
            );
          }),
      }),
      onCommit: () => {
        // A file written this much will keep being written: move its checkpoints off the
        // event loop. (A short-lived registry never pays for the thread.)
        if (++this.#commits === CHECKPOINT_THREAD_AFTER_COMMITS) {
          this.#checkpointer = BackgroundCheckpointer.start(db, file);
        }
      },
    });
  }

  /**
   * Open (creating and migrating as needed) the registry in a file, `:memory:`, or a
   * better-sqlite3 Database the application already has. Such a Database is switched to WAL
   * (which stays with the file); in `full` durability its commits fsync on the calling
   * thread, as its own writes need; `close()` leaves it open and puts back its `synchronous`,
   * `busy_timeout`, `query_only` and `wal_autocheckpoint` settings.
   */
  static async open(
    target: string | BetterSqlite3Database,
    options: SqliteBackendOptions = {},
  ): Promise<SqliteBackend> {
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
      return new SqliteBackend(
        db,
        file,
        ownsDatabase,
        busyTimeoutMs,
        restoreSettings,
        fsyncOffThread,
      );
    } catch (error) {
      if (ownsDatabase) db.close();
      else restoreSettings();
      throw toRegistryError(error, "cannot open the registry database");
    }
  }

  get(id: TaskId): Promise<string | undefined> {
    return this.#run("get", () => this.#read(id)?.state.data);
  }

  put(id: TaskId, row: TaskRow): Promise<void> {
    return this.#transaction("put", () => {
      // The stored state, steps not spliced in: its document is replaced, however damaged.
      const stored = this.#sql.read.get({ id });
      const current = stored && unspliced(stored);
      const next = overwriteDocument(current?.state, id, row, Date.now());
      if (current === undefined) this.#sql.insert.run(withDocumentColumns(next));
      else this.#write(next, current);
    });
  }

  list(prefix: string): Promise<TaskId[]> {
    return this.#run("list", () => {
      const ids: TaskId[] = [];
      // A range scan from the prefix stops at the first id past it: exact, unlike LIKE,
      // for which `_` in `task_` would be a wildcard.
      for (const { id } of this.#sql.listFrom.iterate({ from: prefix })) {
        if (!id.startsWith(prefix)) break;
        ids.push(id as TaskId);
      }
      return ids;
    });
  }

  cas(id: TaskId, expected: string, next: TaskRow, write?: SeedWrite): Promise<boolean> {
    return this.#transaction("cas", () => {
      const current = this.#read(id);
      if (current?.state.data !== expected) return false;
      const now = write?.now ?? Date.now();
      this.#write(overwriteDocument(current.state, id, next, now, write?.lease), current);
      return true;
    });
  }

  pending(kind: string, limit = -1): Promise<StoredDocument[]> {
    return this.#run("pending", () => {
      const rows =
        kind === ""
          ? this.#sql.pendingAll.all({ limit })
          : this.#sql.pendingOfKind.all({ kind, limit });
      return rows as StoredDocument[];
    });
  }

  quarantine(
    id: TaskId,
    expected: string,
    reason: string,
    now: number,
  ): Promise<Quarantined | undefined> {
    return this.#transaction("quarantine", () => {
      const marked = this.#sql.quarantine.get({ id, data: expected, reason, at: now });
      return marked && { id, ...marked, reason, quarantinedAt: now };
    });
  }

  quarantined(kinds: KindFilter, limit = Number.POSITIVE_INFINITY): Promise<Quarantined[]> {
    return this.#run("quarantined", () => {
      const found: Quarantined[] = [];
      // Quarantined rows are few: walk their index in order and filter by kind here.
      for (const row of this.#sql.quarantinedRows.iterate({})) {
        if (found.length >= limit) break;
        if (kinds.length === 0 || kinds.includes(row.kind)) found.push(row as Quarantined);
      }
      return found;
    });
  }

  repair(id: TaskId, row: TaskRow): Promise<void> {
    return this.#transaction("repair", () => {
      const stored = this.#sql.read.get({ id });
      if (stored === undefined) throw new NotFoundError(id);
      const current = unspliced(stored);
      this.#write(repairDocument(current.state, id, row, Date.now()), current);
    });
  }

  insert(tasks: readonly TaskState[]): Promise<TaskId[]> {
    return this.#transaction("insert", () =>
      tasks.map((task) => {
        if (task.idempotencyKey !== null) {
          const existing = this.#sql.byIdempotencyKey.get({ key: task.idempotencyKey });
          if (existing !== undefined) return existing.id as TaskId;
        }
        this.#sql.insert.run(withDocumentColumns(task));
        return task.id;
      }),
    );
  }

  read(id: TaskId): Promise<TaskState | undefined> {
    return this.#run("read", () => this.#read(id)?.state);
  }

  update(id: TaskId, change: Change): Promise<TaskState> {
    return this.#transaction("update", () => {
      const current = this.#load(this.#changeable(id));
      const next = change(current.state);
      if (next.data !== current.state.data) return this.#write(next, current);
      this.#sql.updateSchedule.run(toColumns(next)); // columns only: appended steps stay
      return next;
    });
  }

  async claim(kinds: KindFilter, now: number, limit: number, change: Change): Promise<Batch> {
    // Usually an idle worker finds nothing: find that out without taking the write lock.
    if (!(await this.#run("claim", () => this.#anyDue(kinds, now)))) return NO_BATCH;
    return this.#transaction("claim", () =>
      changeEach(
        limit,
        (wanted) => this.#bestDue(kinds, now, wanted),
        (row) => this.#change(row, change),
        (row, reason) => this.#quarantine(row, reason, now),
      ),
    );
  }

  /** Whether a claim would find a task: an index-only probe. */
  #anyDue(kinds: KindFilter, now: number): boolean {
    return kinds.length === 0
      ? this.#sql.firstDueAny.get({ now }) !== undefined
      : kinds.some((kind) => this.#sql.firstDueOfKind.get({ kind, now }) !== undefined);
  }

  /** The due pending tasks a claim takes: one ordered index search per kind, merged. */
  #bestDue(kinds: KindFilter, now: number, limit: number): StoredRow[] {
    const single = limit === 1;
    const rows =
      kinds.length === 0
        ? single
          ? this.#sql.bestDueAny.all({ now })
          : this.#sql.bestDueAnyUpTo.all({ now, limit })
        : kinds.flatMap((kind) =>
            single
              ? this.#sql.bestDueOfKind.all({ kind, now })
              : this.#sql.bestDueOfKindUpTo.all({ kind, now, limit }),
          );
    if (kinds.length <= 1) return rows;
    return rows
      .map((row) => ({ row, state: fromColumns(row) }))
      .sort((a, b) => claimOrder(a.state, b.state))
      .slice(0, limit)
      .map(({ row }) => row);
  }

  async sweep(kinds: KindFilter, filter: SweepFilter, change: Change): Promise<Batch> {
    const expired = () =>
      (filter.owner === undefined
        ? this.#sql.expired.all({ now: filter.now })
        : this.#sql.expiredOrOwned.all({ now: filter.now, owner: filter.owner })
      ).filter((row) => kinds.length === 0 || kinds.includes(row.kind));
    // Usually there is nothing to take back: find that out without taking the write lock.
    if ((await this.#run("sweep", expired)).length === 0) return NO_BATCH;
    return this.#transaction("sweep", () =>
      changeEach(
        Number.POSITIVE_INFINITY,
        expired,
        (row) => this.#change(row, change),
        (row, reason) => this.#quarantine(row, reason, filter.now),
      ),
    );
  }

  appendSteps(id: TaskId, token: string, steps: readonly StepRecord[]): Promise<AppendResult> {
    return this.#transaction("appendSteps", () => {
      const row = this.#changeable(id);
      const state = fromColumns(row);
      fence(state, token);
      const last = this.#sql.lastStep.get({ id })?.last ?? undefined;
      const ordinals = steps.map((step) => step.ordinal);
      const appended = canAppend(row.steps_in_document, last, ordinals);
      if (appended) {
        const length = appendedLength(
          row.data.length,
          this.#sql.appendedLength.get({ id })?.length ?? 0,
          steps,
          // Only a step already appended (at most `last`) is replaced: a rare re-record.
          (ordinal) =>
            last === undefined || ordinal > last
              ? undefined
              : this.#sql.stepData.get({ id, ordinal })?.data.length,
        );
        for (const { ordinal, data } of steps) this.#sql.putStep.run({ id, ordinal, data });
        this.#sql.setAppendedLength.run({ id, length });
      }
      return { appended, cancelRequested: state.cancelRequested };
    });
  }

  /** Index lookups over every kind: waking early for another kind's task is harmless. */
  nextWakeAt(_kinds: KindFilter, after: number): Promise<number | undefined> {
    return this.#run("nextWakeAt", () => {
      const due = this.#sql.earliestDue.get({ after })?.at ?? undefined;
      const expiry = this.#sql.earliestExpiry.get({ after })?.at ?? undefined;
      if (due === undefined) return expiry;
      return expiry === undefined ? due : Math.min(due, expiry);
    });
  }

  /**
   * `PRAGMA data_version` moves when another connection commits; the WAL file, which every
   * commit of any process writes to, is watched (inotify on Linux) to look at it at once.
   */
  readonly changes: ChangeFeed = {
    version: () => this.#run("changes.version", () => this.#sql.dataVersion.get() as number),
    watch: (listener) => this.#watchChanges(listener),
  };

  #watchChanges(listener: () => void): () => void {
    if (this.#watcher === undefined && this.#walPath !== undefined && !this.#closed) {
      try {
        this.#watcher = watch(this.#walPath, { persistent: false }, () => {
          for (const notify of this.#changeListeners) notify();
        });
        this.#watcher.on("error", () => this.#stopWatching());
      } catch {
        // No WAL file to watch (read-only, or another journal mode): callers keep polling.
      }
    }
    this.#changeListeners.add(listener);
    // The watch stays open until close(): idle workers come and go many times a second.
    return () => this.#changeListeners.delete(listener);
  }

  #stopWatching(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopWatching();
    await this.#writer.drained(); // writes already requested still commit
    await this.#walSync?.close();
    await this.#checkpointer?.stop();
    if (this.#ownsDatabase) this.#db.close();
    else this.#restoreSettings();
  }

  /** The task with appended steps spliced into its document. */
  #read(id: TaskId): Loaded | undefined {
    const row = this.#sql.read.get({ id });
    return row && this.#load(row);
  }

  /** A row as a state; the appended steps are read only if the row says there are some. */
  #load(row: StoredRow): Loaded {
    const loaded = unspliced(row);
    if (!loaded.appended) return loaded;
    const { id, data } = loaded.state;
    const steps = this.#sql.stepsOf.all({ id }).map((step) => step.data);
    return { ...loaded, state: { ...loaded.state, data: spliceStored(id, data, steps) } };
  }

  /** The task's row, for a change: NotFoundError if missing, refused if quarantined. */
  #changeable(id: TaskId): StoredRow {
    const row = this.#sql.read.get({ id });
    if (row === undefined) throw new NotFoundError(id);
    if (isQuarantined(row)) throw quarantinedError(id);
    return row;
  }

  /** Store `change` of the task the row holds. */
  #change(row: StoredRow, change: Change): TaskState {
    const current = this.#load(row);
    return this.#write(change(current.state), current);
  }

  /** Quarantine the row as it was read in this transaction. */
  #quarantine(row: StoredRow, reason: string, now: number): Quarantined {
    this.#sql.quarantine.get({ id: row.id, data: row.data, reason, at: now });
    return { id: row.id as TaskId, kind: row.kind, status: row.status, reason, quarantinedAt: now };
  }

  /**
   * Store a whole state: its document now holds every step, so the steps appended to what
   * was loaded are dropped. Only a new document (put, cas, repair) reaches a quarantined
   * task here, and it releases the task.
   */
  #write(state: TaskState, loaded: Loaded): TaskState {
    this.#sql.update.run(withDocumentColumns(state));
    if (loaded.appended) {
      this.#sql.clearSteps.run({ id: state.id });
      this.#sql.clearAppendedLength.run({ id: state.id });
    }
    if (loaded.quarantined) this.#sql.release.run({ id: state.id });
    return state;
  }

  /** One synchronous statement, retried while another connection holds the lock. */
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

  /**
   * `operation` inside an immediate (write-locked) transaction, so it never races another
   * writer between its reads and writes; concurrent requests share one commit (GroupCommit).
   */
  #transaction<T>(action: string, operation: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new ClosedError());
    return this.#writer.write(() => {
      try {
        return operation();
      } catch (error) {
        throw isBusy(error) ? error : toRegistryError(error, `${action} failed`);
      }
    });
  }
}

/**
 * A state as bound to statements. `stepsInDocument` matters only to statements that write
 * `data` (see withDocumentColumns): counting scans the document, so others skip it.
 */
function toColumns(state: TaskState, stepsInDocument = 0): Columns {
  return {
    id: state.id,
    kind: state.kind,
    status: state.status,
    data: state.data,
    created_at: state.createdAt,
    updated_at: state.updatedAt,
    priority: state.priority,
    run_at: state.runAt,
    runs: state.runs,
    max_attempts: state.maxAttempts,
    lease_owner: state.lease?.owner ?? null,
    lease_token: state.lease?.token ?? null,
    lease_expires_at: state.lease?.expiresAt ?? null,
    last_error: state.lastError,
    idempotency_key: state.idempotencyKey,
    cancel_requested: state.cancelRequested ? 1 : 0,
    steps_in_document: stepsInDocument,
  };
}

function isQuarantined(row: StoredRow): boolean {
  return row.quarantined_at !== undefined && row.quarantined_at !== null;
}

/** A row as a state, without the steps appended to it. */
function unspliced(row: StoredRow): Loaded {
  return {
    state: fromColumns(row),
    appended: row.has_steps !== 0,
    quarantined: isQuarantined(row),
  };
}

/** The columns of a state whose document is being written. */
function withDocumentColumns(state: TaskState): Columns {
  return toColumns(state, stepsInDocument(state));
}

function fromColumns(row: Columns): TaskState {
  return {
    id: row.id as TaskId,
    kind: row.kind,
    status: row.status,
    data: row.data,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    priority: row.priority,
    runAt: row.run_at,
    runs: row.runs,
    maxAttempts: row.max_attempts,
    lease:
      row.lease_owner === null || row.lease_token === null || row.lease_expires_at === null
        ? null
        : { owner: row.lease_owner, token: row.lease_token, expiresAt: row.lease_expires_at },
    lastError: row.last_error,
    idempotencyKey: row.idempotency_key,
    cancelRequested: row.cancel_requested !== 0,
  };
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

/** A Kysely instance used only to build SQL and run migrations; never destroyed (that would close `db`). */
function kyselyFor(db: Database.Database): Kysely<RegistryTables> {
  return new Kysely<RegistryTables>({ dialect: new SqliteDialect({ database: db }) });
}

const COLUMN_NAMES = [
  "id",
  "kind",
  "status",
  "data",
  "created_at",
  "updated_at",
  "priority",
  "run_at",
  "runs",
  "max_attempts",
  "lease_owner",
  "lease_token",
  "lease_expires_at",
  "last_error",
  "idempotency_key",
  "cancel_requested",
  "steps_in_document",
] as const satisfies readonly (keyof Columns)[];

type Statements = ReturnType<typeof prepareStatements>;

/** Adds `has_steps`: whether task_steps holds rows for the task (an index probe). */
function withHasSteps<Q extends SelectQueryBuilder<RegistryTables, "tasks", Columns>>(query: Q) {
  return query.select((eb) =>
    eb
      .exists(
        eb
          .selectFrom("task_steps")
          .select("task_steps.ordinal")
          .whereRef("task_steps.task_id", "=", "tasks.id"),
      )
      .as("has_steps"),
  );
}

// Literals, not parameters: only then can SQLite prove a query matches a partial index's WHERE.
const PENDING = sql.lit("pending" as const);
const RUNNING = sql.lit("running" as const);

function prepareStatements(db: Database.Database) {
  const k = kyselyFor(db);
  const allColumns = Object.fromEntries(
    COLUMN_NAMES.map((name) => [name, param(name)]),
  ) as unknown as Columns;
  const { id: _id, created_at: _created, ...mutableColumns } = allColumns;
  const { data: _data, steps_in_document: _count, ...scheduleColumns } = mutableColumns;
  const pendingBase = k
    .selectFrom("tasks")
    .select(["id", "data"])
    .where("status", "=", PENDING)
    .orderBy("id")
    .limit(param<number>("limit"));
  const due = <Q extends SelectQueryBuilder<RegistryTables, "tasks", object>>(query: Q) =>
    query
      .where("status", "=", PENDING)
      // Unary plus hides run_at from the planner's range choice: it then walks the claim
      // index in order and stops at the first due row, instead of sorting every due row
      // (504 µs vs 5 µs per claim with 5,000 pending).
      .where(sql<number>`+${sql.ref("run_at")}`, "<=", param<number>("now"))
      .orderBy("priority", "desc")
      .orderBy("run_at")
      .orderBy("id");
  // The columns of a state: the queue paths read no more than they need.
  const stored = withHasSteps(k.selectFrom("tasks").select(COLUMN_NAMES));
  const bestDue = due(stored);
  // A literal LIMIT 1: with a bound limit SQLite takes 15 µs instead of 5 for the same walk.
  const bestDue1 = bestDue.limit(sql.lit(1));
  const bestDueUpTo = bestDue.limit(param<number>("limit"));
  const firstDue = due(k.selectFrom("tasks").select("id")).limit(sql.lit(1));
  const prepare = <P extends object, R>(query: Compilable<R>) => new PreparedQuery<P, R>(db, query);
  return {
    // Prepared once: db.pragma() prepares its statement on every call, and idle workers ask often.
    dataVersion: db.prepare("PRAGMA data_version").pluck(),
    read: prepare<{ id: string }, StoredRow>(
      stored.select("quarantined_at").where("id", "=", param<string>("id")),
    ),
    stepsOf: prepare<{ id: string }, { data: string }>(
      k
        .selectFrom("task_steps")
        .select("data")
        .where("task_id", "=", param<string>("id"))
        .orderBy("ordinal"),
    ),
    insert: prepare<Columns, never>(k.insertInto("tasks").values(allColumns)),
    update: prepare<Columns, never>(
      k.updateTable("tasks").set(mutableColumns).where("id", "=", param<string>("id")),
    ),
    updateSchedule: prepare<Columns, never>(
      k.updateTable("tasks").set(scheduleColumns).where("id", "=", param<string>("id")),
    ),
    lastStep: prepare<{ id: string }, { last: number | null }>(
      k
        .selectFrom("task_steps")
        .select((eb) => eb.fn.max("ordinal").as("last"))
        .where("task_id", "=", param<string>("id")),
    ),
    clearSteps: prepare<{ id: string }, never>(
      k.deleteFrom("task_steps").where("task_id", "=", param<string>("id")),
    ),
    // The step itself: SQLite's length() counts code points, the budget UTF-16 units.
    stepData: prepare<{ id: string; ordinal: number }, { data: string }>(
      k
        .selectFrom("task_steps")
        .select("data")
        .where("task_id", "=", param<string>("id"))
        .where("ordinal", "=", param<number>("ordinal")),
    ),
    appendedLength: prepare<{ id: string }, { length: number }>(
      k.selectFrom("task_steps_length").select("length").where("task_id", "=", param<string>("id")),
    ),
    setAppendedLength: prepare<{ id: string; length: number }, never>(
      k
        .insertInto("task_steps_length")
        .values({ task_id: param("id"), length: param("length") })
        .onConflict((oc) =>
          oc.column("task_id").doUpdateSet((eb) => ({ length: eb.ref("excluded.length") })),
        ),
    ),
    clearAppendedLength: prepare<{ id: string }, never>(
      k.deleteFrom("task_steps_length").where("task_id", "=", param<string>("id")),
    ),
    putStep: prepare<{ id: string; ordinal: number; data: string }, never>(
      k
        .insertInto("task_steps")
        .values({ task_id: param("id"), ordinal: param("ordinal"), data: param("data") })
        .onConflict((oc) =>
          oc
            .columns(["task_id", "ordinal"])
            .doUpdateSet((eb) => ({ data: eb.ref("excluded.data") })),
        ),
    ),
    listFrom: prepare<{ from: string }, { id: string }>(
      k.selectFrom("tasks").select("id").where("id", ">=", param<string>("from")).orderBy("id"),
    ),
    pendingOfKind: prepare<{ kind: string; limit: number }, { id: string; data: string }>(
      pendingBase.where("kind", "=", param<string>("kind")),
    ),
    pendingAll: prepare<{ limit: number }, { id: string; data: string }>(pendingBase),
    // Its status column becomes `failed`, which no queue index holds; its own is kept.
    quarantine: prepare<
      { id: string; data: string; reason: string; at: number },
      Pick<Quarantined, "kind" | "status">
    >(
      k
        .updateTable("tasks")
        .set((eb) => ({
          status: sql.lit("failed"),
          quarantined_status: eb.ref("status"),
          quarantine_reason: param<string>("reason"),
          quarantined_at: param<number>("at"),
        }))
        .where("id", "=", param<string>("id"))
        .where("data", "=", param<string>("data"))
        .where("quarantined_at", "is", null)
        .returning(["kind", "quarantined_status as status"]),
    ),
    release: prepare<{ id: string }, never>(
      k
        .updateTable("tasks")
        .set({ quarantined_at: null, quarantine_reason: null, quarantined_status: null })
        .where("id", "=", param<string>("id")),
    ),
    quarantinedRows: prepare<Record<string, never>, Quarantined>(
      k
        .selectFrom("tasks")
        .select([
          "id",
          "kind",
          "quarantined_status as status",
          "quarantine_reason as reason",
          "quarantined_at as quarantinedAt",
        ])
        .where("quarantined_at", "is not", null)
        .orderBy("quarantined_at")
        .orderBy("id"),
    ),
    byIdempotencyKey: prepare<{ key: string }, { id: string }>(
      k.selectFrom("tasks").select("id").where("idempotency_key", "=", param<string>("key")),
    ),
    bestDueOfKind: prepare<{ kind: string; now: number }, StoredRow>(
      bestDue1.where("kind", "=", param<string>("kind")),
    ),
    bestDueAny: prepare<{ now: number }, StoredRow>(bestDue1),
    bestDueOfKindUpTo: prepare<{ kind: string; now: number; limit: number }, StoredRow>(
      bestDueUpTo.where("kind", "=", param<string>("kind")),
    ),
    bestDueAnyUpTo: prepare<{ now: number; limit: number }, StoredRow>(bestDueUpTo),
    firstDueOfKind: prepare<{ kind: string; now: number }, { id: string }>(
      firstDue.where("kind", "=", param<string>("kind")),
    ),
    firstDueAny: prepare<{ now: number }, { id: string }>(firstDue),
    expired: prepare<{ now: number }, StoredRow>(
      stored
        .where("status", "=", RUNNING)
        .where("lease_expires_at", "<=", param<number>("now"))
        .orderBy("lease_expires_at"),
    ),
    expiredOrOwned: prepare<{ now: number; owner: string }, StoredRow>(
      stored
        .where("status", "=", RUNNING)
        .where((eb) =>
          eb.or([
            eb("lease_expires_at", "<=", param<number>("now")),
            eb("lease_owner", "=", param<string>("owner")),
          ]),
        )
        .orderBy("lease_expires_at"),
    ),
    earliestDue: prepare<{ after: number }, { at: number | null }>(
      k
        .selectFrom("tasks")
        .select((eb) => eb.fn.min("run_at").as("at"))
        .where("status", "=", PENDING)
        .where("run_at", ">", param<number>("after")),
    ),
    earliestExpiry: prepare<{ after: number }, { at: number | null }>(
      k
        .selectFrom("tasks")
        .select((eb) => eb.fn.min("lease_expires_at").as("at"))
        .where("status", "=", RUNNING)
        .where("lease_expires_at", ">", param<number>("after")),
    ),
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
  for (let delayMs = 1; ; delayMs = Math.min(delayMs * 2, 10)) {
    try {
      return await operation();
    } catch (error) {
      if (!isBusy(error)) throw error;
      if (Date.now() >= deadline) {
        throw new BusyError(
          `the database stayed locked by another connection for ${timeoutMs} ms`,
          {
            cause: error,
          },
        );
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
