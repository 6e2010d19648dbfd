/**
 * The change feed's watch: the WAL file, which every commit of any process writes to
 * (inotify on Linux). One watch serves every listener.
 */
import { type FSWatcher, watch } from "node:fs";

/** How long after a WAL write its listeners are told again (see the watch's callback). */
const TRAILING_MS = 2;

export class WalWatch {
  /** The WAL file; none in memory. */
  readonly #walPath: string | undefined;
  readonly #listeners = new Set<() => void>();
  #watcher: FSWatcher | undefined;
  #trailing: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(walPath: string | undefined) {
    this.#walPath = walPath;
  }

  /** Calls `listener` after writes to the WAL, until the returned function is called. */
  watch(listener: () => void): () => void {
    if (this.#watcher === undefined && this.#walPath !== undefined && !this.#closed) {
      try {
        this.#watcher = watch(this.#walPath, { persistent: false }, () => {
          this.#notify();
          // A commit writes its frames to the WAL before the WAL index (shared memory, which
          // no watch sees) makes them visible: a listener that looks at once may look too
          // early, and nothing else would tell it. Tell it again a moment later.
          this.#trailing ??= setTimeout(() => {
            this.#trailing = undefined;
            this.#notify();
          }, TRAILING_MS).unref();
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

  #notify(): void {
    for (const notify of this.#listeners) notify();
  }

  #stop(): void {
    clearTimeout(this.#trailing);
    this.#trailing = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
