/**
 * What the registry stores about a task, apart from how any backend stores it: the domain
 * types the lifecycle rules read and write and every adapter maps to its own layout.
 */
import type { TaskId } from "./ids.js";
import type { TaskStatus } from "./wire/schema.js";

/** A serialized task and the fields an adapter indexes beside it. */
export interface TaskRow {
  readonly kind: string;
  readonly status: TaskStatus;
  /** The task in the Rust crate's JSON format; `cas` compares it byte for byte. */
  readonly data: string;
}

/** Who may finish a running task: only the holder of the current token. */
export interface Lease {
  readonly owner: string;
  /** The task's fence counter when the lease began, as decimal text (see `TaskState.fence`). */
  readonly token: string;
  /** Epoch ms; after it, the next claim or sweep may take the task over. */
  readonly expiresAt: number;
}

/** Everything stored about a task: its document and its scheduling state. */
export interface TaskState extends TaskRow {
  readonly id: TaskId;
  readonly priority: number;
  /** Epoch ms before which the task is not claimed. */
  readonly runAt: number;
  /** How many times the task was claimed. */
  readonly runs: number;
  readonly maxAttempts: number;
  /**
   * Counts the leases the task was ever given; never goes down. Each new lease takes the next
   * value as its token, so a token of an earlier lease can never match again.
   */
  readonly fence: number;
  /** Present while the task is running. */
  readonly lease: Lease | null;
  /** The last failure, as CruxErr JSON. */
  readonly lastError: string | null;
  readonly idempotencyKey: string | null;
  readonly cancelRequested: boolean;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** A step's JSON at its position (ordinal) in the run. */
export interface StepRecord {
  readonly ordinal: number;
  readonly data: string;
  /** Where the caller gave it, for a ValidationError: `$.steps[i]` (its index) by default. */
  readonly path?: string;
}

/**
 * A task taken out of every queue because its stored document or last error does not decode.
 * Its stored bytes stay as they were; claims, sweeps, pending() and nextWakeAt() skip it, and
 * every change refuses it, until put, cas or repair gives it a new document.
 */
export interface Quarantined {
  readonly id: TaskId;
  readonly kind: string;
  /** The status it had when it was quarantined. */
  readonly status: TaskStatus;
  /** Why: the decoding error's message. */
  readonly reason: string;
  /** Epoch ms. */
  readonly quarantinedAt: number;
}

/** A stored document and the task it belongs to. */
export interface StoredDocument {
  readonly id: TaskId;
  readonly data: string;
}

/** Kinds a query or a worker takes: `[]` means every kind. */
export type KindFilter = readonly string[];

/** Which running tasks a sweep takes back. */
export interface SweepFilter {
  /** Leases that expired by this time (epoch ms). */
  readonly now: number;
  /** Also every lease of this owner, expired or not. */
  readonly owner?: string | undefined;
}
