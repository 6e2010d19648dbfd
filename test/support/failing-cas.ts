import type { RegistryBackend, TaskRow } from "../../src/backend/port.js";
import type { TaskId } from "../../src/ids.js";

/** The seed's FailingCasBackend: the first `failures` CAS calls lose without writing. */
export class FailingCasBackend implements RegistryBackend {
  #failuresLeft: number;

  constructor(
    private readonly inner: RegistryBackend,
    failures: number,
  ) {
    this.#failuresLeft = failures;
  }

  get(id: TaskId): Promise<string | undefined> {
    return this.inner.get(id);
  }
  put(id: TaskId, row: TaskRow): Promise<void> {
    return this.inner.put(id, row);
  }
  list(prefix: string): Promise<TaskId[]> {
    return this.inner.list(prefix);
  }
  async cas(id: TaskId, expected: string, next: TaskRow): Promise<boolean> {
    if (this.#failuresLeft > 0) {
      this.#failuresLeft--;
      return false;
    }
    return this.inner.cas(id, expected, next);
  }
  pending(kind: string, limit?: number): Promise<string[]> {
    return this.inner.pending(kind, limit);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
