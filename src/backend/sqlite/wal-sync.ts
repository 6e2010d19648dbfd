/**
 * `full` durability without an fsync on the event loop. The connection commits with
 * `synchronous = NORMAL` (the commit's frames are written to the WAL but not flushed), and
 * this fsyncs the WAL file on libuv's thread pool; a write resolves only after an fsync that
 * began after its commit has finished. Commits made while one fsync runs share the next one.
 *
 * An fsync flushes the whole file, whichever connection or process wrote to it, so it also
 * makes durable every earlier commit in the WAL. Frames that a checkpoint has already copied
 * are durable in the database file: SQLite syncs the WAL before a checkpoint reads it and the
 * database file after it writes it.
 */
import { close, fsync, open } from "node:fs";
import { dirname } from "node:path";

export type Fsync = (fd: number, done: (error: NodeJS.ErrnoException | null) => void) => void;

export class WalSync {
  readonly #walPath: string;
  readonly #fsync: Fsync;
  #fd: Promise<number> | undefined;
  /** The fsync now running. */
  #running: Promise<void> | undefined;
  /** The one that starts when it ends, shared by everyone who asked meanwhile. */
  #next: Promise<void> | undefined;

  /** `walPath` must be absolute: the process may change directory later. */
  constructor(walPath: string, syncFile: Fsync = fsync) {
    this.#walPath = walPath;
    this.#fsync = syncFile;
  }

  /** Resolves once everything committed to the WAL before this call is on disk. */
  durable(): Promise<void> {
    if (this.#running === undefined) {
      const running = this.#syncOnce().finally(() => {
        this.#running = undefined;
      });
      this.#running = running;
      return running;
    }
    // The fsync running may have begun before this commit wrote its frames: wait for the next.
    this.#next ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.durable();
      });
    return this.#next;
  }

  /** Waits for the fsyncs asked for, then closes the file. */
  async close(): Promise<void> {
    await this.#next?.catch(() => undefined);
    await this.#running?.catch(() => undefined);
    const fd = await this.#fd?.catch(() => undefined);
    this.#fd = undefined;
    if (fd !== undefined) await callback<void>((done) => close(fd, (error) => done(error)));
  }

  async #syncFolder(): Promise<void> {
    const folder = await openFile(dirname(this.#walPath), "r");
    try {
      await callback<void>((done) => this.#fsync(folder, (error) => done(error)));
    } finally {
      close(folder, () => undefined);
    }
  }

  async #syncOnce(): Promise<void> {
    const fd = await this.#open();
    await callback<void>((done) => this.#fsync(fd, (error) => done(error)));
  }

  /**
   * Opened at the first commit, when SQLite has created the WAL; for writing, which Windows
   * needs to flush it. Its folder is synced once too, so the file's name survives a power
   * loss (SQLite would do that at its first sync) where folders can be opened (not Windows,
   * whose file system journals names by itself).
   */
  #open(): Promise<number> {
    this.#fd ??= (async () => {
      await this.#syncFolder().catch(() => undefined);
      return openFile(this.#walPath, "r+");
    })();
    // A failed open is not cached: the next commit tries again.
    this.#fd.catch(() => {
      this.#fd = undefined;
    });
    return this.#fd;
  }
}

function openFile(path: string, flags: string): Promise<number> {
  return callback<number>((done) => open(path, flags, done));
}

function callback<T>(
  run: (done: (error: NodeJS.ErrnoException | null, value?: T) => void) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    run((error, value) => (error ? reject(error) : resolve(value as T)));
  });
}
