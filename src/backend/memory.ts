/**
 * The reference adapter: a sorted map in process memory. It defines the port's semantics in
 * the fewest lines, and doubles as the model in model-based tests. Nothing survives the process.
 */
import { ClosedError } from "../errors.js";
import type { TaskId } from "../ids.js";
import type { RegistryBackend, TaskRow } from "./port.js";

export class MemoryBackend implements RegistryBackend {
  readonly #rows = new Map<TaskId, TaskRow>();
  #closed = false;

  async get(id: TaskId): Promise<string | undefined> {
    this.#assertOpen();
    return this.#rows.get(id)?.data;
  }

  async put(id: TaskId, row: TaskRow): Promise<void> {
    this.#assertOpen();
    this.#rows.set(id, row);
  }

  async list(prefix: string): Promise<TaskId[]> {
    this.#assertOpen();
    return this.#sortedIds().filter((id) => id.startsWith(prefix));
  }

  async cas(id: TaskId, expected: string, next: TaskRow): Promise<boolean> {
    this.#assertOpen();
    if (this.#rows.get(id)?.data !== expected) return false;
    this.#rows.set(id, next);
    return true;
  }

  async pending(kind: string, limit = Number.POSITIVE_INFINITY): Promise<string[]> {
    this.#assertOpen();
    const documents: string[] = [];
    for (const id of this.#sortedIds()) {
      if (documents.length >= limit) break;
      const row = this.#rows.get(id);
      if (row?.status === "pending" && (kind === "" || row.kind === kind)) {
        documents.push(row.data);
      }
    }
    return documents;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #sortedIds(): TaskId[] {
    return [...this.#rows.keys()].sort();
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError();
  }
}
