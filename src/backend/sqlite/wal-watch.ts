/**
 * The change feed's watch: the WAL file, which every commit of any process writes to
 * (inotify on Linux). One watch serves every listener.
 */
import { type FSWatcher, watch } from "node:fs";

export class WalWatch {
  /** The WAL file; none in memory. */
  readonly #walPath: string | undefined;
  readonly #listeners = new Set<() => void>();
  #watcher: FSWatcher | undefined;
  #closed = false;

  constructor(walPath: string | undefined) {
    this.#walPath = walPath;
  }

  /** Calls `listener` after writes to the WAL, until the returned function is called. */
  watch(listener: () => void): () => void {
    if (this.#watcher === undefined && this.#walPath !== undefined && !this.#closed) {
      try {
        this.#watcher = watch(this.#walPath, { persistent: false }, () => {
          for (const notify of this.#listeners) notify();
        });
        this.#watcher.on("error", () => this.#stop());
      } catch {
        // No WAL file to watch (read-only, or another journal mode): callers keep polling.
      }
    }
    this.#listeners.add(listener);
    // The watch stays open until close(): idle workers come and go many times a second.
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#closed = true;
    this.#stop();
  }

  #stop(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
