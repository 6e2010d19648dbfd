/** The SQLite task backend: the RegistryBackend port over the connection and its statements. */
import { NotFoundError } from "../../errors.js";
import type { TaskId } from "../../ids.js";
import {
  appendedLength,
  canAppend,
  fence,
  overwriteDocument,
  repairDocument,
} from "../../lifecycle.js";
import { claimOrder } from "../memory.js";
import type {
  AppendResult,
  Batch,
  Change,
  KindFilter,
  Quarantined,
  RegistryBackend,
  SeedWrite,
  StepRecord,
  StoredDocument,
  SweepFilter,
  TaskRow,
  TaskState,
} from "../port.js";
import { changeEach, quarantinedError, spliceStored } from "../quarantine.js";
import { SqliteConnection } from "./connection.js";
import type { BetterSqlite3Database } from "./database.js";
import { toRegistryError } from "./errors.js";
import type { SqliteBackendOptions } from "./options.js";
import {
  fromColumns,
  isQuarantined,
  type Loaded,
  type StoredRow,
  toColumns,
  unspliced,
  withDocumentColumns,
} from "./rows.js";
import { prepareStatements, type Statements } from "./statements.js";
import { WalWatch } from "./wal-watch.js";

const NO_BATCH: Batch = { changed: [], quarantined: [] };

export class SqliteBackend implements RegistryBackend {
  readonly #connection: SqliteConnection;
  readonly #sql: Statements;
  readonly #walWatch: WalWatch;

  private constructor(connection: SqliteConnection) {
    this.#connection = connection;
    this.#sql = prepareStatements(connection.db);
    this.#walWatch = new WalWatch(connection.walPath);
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
    const connection = await SqliteConnection.open(target, options);
    try {
      return new SqliteBackend(connection);
    } catch (error) {
      await connection.close();
      throw toRegistryError(error, "cannot open the registry database");
    }
  }

  get(id: TaskId): Promise<string | undefined> {
    return this.#connection.run("get", () => this.#read(id)?.state.data);
  }

  put(id: TaskId, row: TaskRow): Promise<void> {
    return this.#connection.transaction("put", () => {
      // The stored state, steps not spliced in: its document is replaced, however damaged.
      const stored = this.#sql.read.get({ id });
      const current = stored && unspliced(stored);
      const next = overwriteDocument(current?.state, id, row, Date.now());
      if (current === undefined) this.#sql.insert.run(withDocumentColumns(next));
      else this.#write(next, current);
    });
  }

  list(prefix: string): Promise<TaskId[]> {
    return this.#connection.run("list", () => {
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
    return this.#connection.transaction("cas", () => {
      const current = this.#read(id);
      if (current?.state.data !== expected) return false;
      const now = write?.now ?? Date.now();
      this.#write(overwriteDocument(current.state, id, next, now, write?.lease), current);
      return true;
    });
  }

  pending(kind: string, limit = -1): Promise<StoredDocument[]> {
    return this.#connection.run("pending", () => {
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
    return this.#connection.transaction("quarantine", () => {
      const marked = this.#sql.quarantine.get({ id, data: expected, reason, at: now });
      return marked && { id, ...marked, reason, quarantinedAt: now };
    });
  }

  quarantined(kinds: KindFilter, limit = Number.POSITIVE_INFINITY): Promise<Quarantined[]> {
    return this.#connection.run("quarantined", () => {
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
    return this.#connection.transaction("repair", () => {
      const stored = this.#sql.read.get({ id });
      if (stored === undefined) throw new NotFoundError(id);
      const current = unspliced(stored);
      this.#write(repairDocument(current.state, id, row, Date.now()), current);
    });
  }

  insert(tasks: readonly TaskState[]): Promise<TaskId[]> {
    return this.#connection.transaction("insert", () =>
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
    return this.#connection.run("read", () => this.#read(id)?.state);
  }

  update(id: TaskId, change: Change): Promise<TaskState> {
    return this.#connection.transaction("update", () => {
      const current = this.#load(this.#changeable(id));
      const next = change(current.state);
      if (next.data !== current.state.data) return this.#write(next, current);
      this.#sql.updateSchedule.run(toColumns(next)); // columns only: appended steps stay
      return next;
    });
  }

  async claim(kinds: KindFilter, now: number, limit: number, change: Change): Promise<Batch> {
    // Usually an idle worker finds nothing: find that out without taking the write lock.
    if (!(await this.#connection.run("claim", () => this.#anyDue(kinds, now)))) return NO_BATCH;
    return this.#connection.transaction("claim", () =>
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
    if ((await this.#connection.run("sweep", expired)).length === 0) return NO_BATCH;
    return this.#connection.transaction("sweep", () =>
      changeEach(
        Number.POSITIVE_INFINITY,
        expired,
        (row) => this.#change(row, change),
        (row, reason) => this.#quarantine(row, reason, filter.now),
      ),
    );
  }

  appendSteps(id: TaskId, token: string, steps: readonly StepRecord[]): Promise<AppendResult> {
    return this.#connection.transaction("appendSteps", () => {
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
    return this.#connection.run("nextWakeAt", () => {
      const due = this.#sql.earliestDue.get({ after })?.at ?? undefined;
      const expiry = this.#sql.earliestExpiry.get({ after })?.at ?? undefined;
      if (due === undefined) return expiry;
      return expiry === undefined ? due : Math.min(due, expiry);
    });
  }

  changeVersion(): Promise<number> {
    return this.#connection.run("changeVersion", () => this.#sql.dataVersion.get() as number);
  }

  /** Watches the WAL file, which every commit of any process writes to (inotify on Linux). */
  watchChanges(listener: () => void): () => void {
    return this.#walWatch.watch(listener);
  }

  async close(): Promise<void> {
    this.#walWatch.close();
    await this.#connection.close();
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
}
