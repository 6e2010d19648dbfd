/**
 * The storage port: the seed's four operations over serialized tasks (`get`, `put`, `list`,
 * `cas`), plus the columns an adapter indexes and the one indexed query the registry needs.
 * The registry depends only on this interface; every adapter passes the same contract suite.
 */
import type { TaskId } from "../ids.js";
import type { TaskStatus } from "../wire/schema.js";

/** A serialized task and the fields an adapter indexes beside it. */
export interface TaskRow {
  readonly kind: string;
  readonly status: TaskStatus;
  /** The task in the Rust crate's JSON format; `cas` compares it byte for byte. */
  readonly data: string;
}

export interface RegistryBackend {
  /** The stored document, or undefined when there is no such task. */
  get(id: TaskId): Promise<string | undefined>;
  /** Insert or overwrite, unconditionally. */
  put(id: TaskId, row: TaskRow): Promise<void>;
  /** Ids starting with `prefix` (`""` = all), in id order, which is submit order. */
  list(prefix: string): Promise<TaskId[]>;
  /**
   * Replace the row only if its stored document equals `expected` exactly; false, with
   * nothing written, when it differs or the task is missing. Compare and write are atomic.
   */
  cas(id: TaskId, expected: string, next: TaskRow): Promise<boolean>;
  /** Documents of `pending` tasks of `kind` (`""` = every kind), oldest first, from an index. */
  pending(kind: string, limit?: number): Promise<string[]>;
  /** Release the storage; later calls fail with a ClosedError. Idempotent. */
  close(): Promise<void>;
}
