/** A task's row as stored, and the TaskState it holds. */
import type { Selectable } from "kysely";
import type { TaskId } from "../../ids.js";
import { stepsInDocument } from "../../lifecycle.js";
import type { TaskState } from "../port.js";
import type { RegistryTables } from "./tables.js";

/** The columns of a task's state: quarantine is set only by quarantine(), and cleared by #write. */
export type Columns = Omit<
  Selectable<RegistryTables["tasks"]>,
  "quarantined_at" | "quarantine_reason" | "quarantined_status"
>;

/**
 * A row as read: its columns, whether steps were appended to it since it was written, and,
 * read by id, when it was quarantined (the queue paths never select a quarantined row).
 */
export type StoredRow = Columns & {
  readonly has_steps: number;
  readonly quarantined_at?: number | null;
};

/** A task as read inside a transaction: `appended` says task_steps rows back its document. */
export interface Loaded {
  readonly state: TaskState;
  readonly appended: boolean;
  readonly quarantined: boolean;
}

/**
 * Each column of a state once: `satisfies` makes a column added to the table but not here, or
 * here but no longer in the table, a compile error. The names statements use follow from it.
 */
const COLUMNS = {
  id: true,
  kind: true,
  status: true,
  data: true,
  created_at: true,
  updated_at: true,
  priority: true,
  run_at: true,
  runs: true,
  max_attempts: true,
  lease_owner: true,
  lease_token: true,
  lease_expires_at: true,
  last_error: true,
  idempotency_key: true,
  cancel_requested: true,
  steps_in_document: true,
} as const satisfies Record<keyof Columns, true>;

/** The columns of a state, in the table's order. */
export const COLUMN_NAMES = Object.keys(COLUMNS) as (keyof Columns)[];

/**
 * A state as bound to statements. `stepsInDocument` matters only to statements that write
 * `data` (see withDocumentColumns): counting scans the document, so others skip it.
 */
export function toColumns(state: TaskState, stepsInDocument = 0): Columns {
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

export function isQuarantined(row: StoredRow): boolean {
  return row.quarantined_at !== undefined && row.quarantined_at !== null;
}

/** A row as a state, without the steps appended to it. */
export function unspliced(row: StoredRow): Loaded {
  return {
    state: fromColumns(row),
    appended: row.has_steps !== 0,
    quarantined: isQuarantined(row),
  };
}

/** The columns of a state whose document is being written. */
export function withDocumentColumns(state: TaskState): Columns {
  return toColumns(state, stepsInDocument(state));
}

export function fromColumns(row: Columns): TaskState {
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
