/**
 * The connection pipeline, for every table in the registry's file: reads run at once, retried
 * while another connection holds the lock; writes run in immediate transactions that
 * concurrent requests share (GroupCommit), made durable off the event loop in `full`
 * durability on a file we opened (WalSync); a file written often is checkpointed from a
 * thread (BackgroundCheckpointer).
 */
import type Database from "better-sqlite3";
import { ClosedError, StorageError } from "../../errors.js";
import { BackgroundCheckpointer } from "./checkpointer.js";
import type { BetterSqlite3Database } from "./database.js";
import { busyTimeoutError, isBusy, retryWhileBusy, toRegistryError, translated } from "./errors.js";
import { GroupCommit } from "./group-commit.js";
import { type OpenedDatabase, openDatabase } from "./open.js";
import type { SqliteBackendOptions } from "./options.js";
import { WalSync } from "./wal-sync.js";

/** Commits after which a connection hands its WAL checkpoints to a background thread. */
const CHECKPOINT_THREAD_AFTER_COMMITS = 200;

export class SqliteConnection {
  /** For preparing statements; run them through `run` and `transaction`. */
  readonly db: Database.Database;
  /** The WAL file, beside the real database file; none in memory. */
  readonly walPath: string | undefined;
  readonly #busyTimeoutMs: number;
  /** Closes a Database we opened; puts back the settings we changed on an application's own. */
  readonly #release: () => void;
  readonly #writer: GroupCommit;
  /** In `full` durability on a file we opened: flushes the WAL after commits, off the event loop. */
  readonly #walSync: WalSync | undefined;
  #commits = 0;
  #checkpointer: BackgroundCheckpointer | undefined;
  #closed = false;

  /** Open (creating and migrating as needed) the registry's database: see SqliteBackend.open. */
  static async open(
    target: string | BetterSqlite3Database,
    options: SqliteBackendOptions = {},
  ): Promise<SqliteConnection> {
    const opened = await openDatabase(target, options);
    try {
      return new SqliteConnection(opened);
    } catch (error) {
      opened.release();
      throw toRegistryError(error, "cannot open the registry database");
    }
  }

  private constructor({ db, file, busyTimeoutMs, fsyncOffThread, release }: OpenedDatabase) {
    this.db = db;
    this.walPath = file === undefined ? undefined : `${file}-wal`;
    const walSync = fsyncOffThread && this.walPath ? new WalSync(this.walPath) : undefined;
    // No WAL to flush after all: SQLite must fsync in the commit again.
    if (fsyncOffThread && walSync === undefined) db.pragma("synchronous = FULL");
    this.#walSync = walSync;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#release = release;
    this.#writer = new GroupCommit(db, {
      isBusy,
      busyTimeoutMs,
      onTimeout: (cause) => busyTimeoutError(busyTimeoutMs, cause),
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
   * `operation` (synchronous statements, no write), retried while another connection holds the
   * lock; its driver errors become RegistryErrors saying `${action} failed`.
   */
  run<T>(action: string, operation: () => T): Promise<T> {
    return retryWhileBusy(this.#busyTimeoutMs, () => {
      if (this.#closed) throw new ClosedError();
      return translated(action, operation);
    });
  }

  /**
   * `operation` inside an immediate (write-locked) transaction, so it never races another
   * writer between its reads and writes; concurrent requests share one commit (GroupCommit).
   */
  transaction<T>(action: string, operation: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new ClosedError());
    return this.#writer.write(() => translated(action, operation));
  }

  /** Later calls fail with ClosedError; writes already requested still commit. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writer.drained(); // writes already requested still commit
    await this.#walSync?.close();
    await this.#checkpointer?.stop();
    this.#release();
  }
}
