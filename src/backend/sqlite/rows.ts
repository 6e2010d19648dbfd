/**
 * A task's row as stored, and the TaskState it holds. Run state lives in columns (status,
 * lease, the checkpoint's value and times) and is spliced into the document, which is
 * written whole only when something else in it changes: a claim or a completion then writes
 * a few small columns instead of the document.
 */
import type { Selectable } from "kysely";
import { SerializationError } from "../../errors.js";
import type { TaskId } from "../../ids.js";
import { stepsInDocument, withRun } from "../../lifecycle.js";
import type { TaskState } from "../../task-state.js";
import { decodeStoredTask } from "../../wire/codec.js";
import type { TaskStatus } from "../../wire/schema.js";
import { statusOf } from "../../wire/splice.js";
import { spliceStored } from "../quarantine.js";
import type { RegistryTables } from "./tables.js";

/** The columns of a task's state: quarantine is set only by quarantine(), and cleared by a write. */
export type Columns = Omit<
  Selectable<RegistryTables["tasks"]>,
  "quarantined_at" | "quarantine_reason" | "quarantined_status"
>;

/**
 * A row as read: its columns, whether steps were appended to it since its document was
 * written, and, read by id, when it was quarantined and in which status (the queue paths
 * never select one).
 */
export type StoredRow = Columns & {
  readonly has_steps: number;
  readonly quarantined_at?: number | null;
  readonly quarantined_status?: TaskStatus | null;
};

/**
 * Each column of a state once: `satisfies` makes a column added to the table but not here, or
 * here but no longer in the table, a compile error. The names statements use follow from it.
 */
const COLUMNS = {
  seq: true,
  id: true,
  kind: true,
  status: true,
  priority: true,
  run_at: true,
  runs: true,
  max_attempts: true,
  fence: true,
  lease_owner: true,
  lease_expires_at: true,
  cancel_requested: true,
  steps_in_document: true,
  created_at: true,
  updated_at: true,
  run_started_at: true,
  run_finished_at: true,
  idempotency_key: true,
  last_error: true,
  run_value: true,
  data: true,
} as const satisfies Record<keyof Columns, true>;

/** The columns of a state, in the table's order. */
export const COLUMN_NAMES = Object.keys(COLUMNS) as (keyof Columns)[];

/** The columns the run state lives in beside the document; null: the document's own. */
export const RUN_COLUMNS = ["run_value", "run_started_at", "run_finished_at"] as const;

/**
 * A state as bound to statements: the run state is all in its document, so its run columns
 * are cleared. `seq` is the row's, when it has one. A statement that keeps the document
 * (ScheduleColumns) binds none of the document's columns, so its caller need not count the
 * document's steps (`stepsInDocumentCount`, a scan of it).
 */
export function wholeColumns(
  state: TaskState,
  seq = 0,
  stepsInDocumentCount = stepsInDocument(state),
): Columns {
  // One literal, not spreads: submitMany binds 100,000 of these, and a spread of a
  // 16-column object made binding 15 % of a submit (measured).
  return {
    seq,
    id: state.id,
    kind: state.kind,
    status: state.status,
    priority: state.priority,
    run_at: state.runAt,
    runs: state.runs,
    max_attempts: state.maxAttempts,
    fence: state.fence,
    lease_owner: state.lease?.owner ?? null,
    lease_expires_at: state.lease?.expiresAt ?? null,
    cancel_requested: state.cancelRequested ? 1 : 0,
    steps_in_document: stepsInDocumentCount,
    created_at: state.createdAt,
    updated_at: state.updatedAt,
    run_started_at: null,
    run_finished_at: null,
    idempotency_key: state.idempotencyKey,
    last_error: state.lastError,
    run_value: null,
    data: state.data,
  };
}

export type ScheduleColumns = Omit<
  Columns,
  "steps_in_document" | (typeof RUN_COLUMNS)[number] | "data"
>;

export function isQuarantined(row: Pick<StoredRow, "quarantined_at">): boolean {
  return row.quarantined_at !== undefined && row.quarantined_at !== null;
}

/**
 * The row as a state whose document is `data`. A quarantined row's is in the status it was
 * quarantined in: its `failed` column only keeps it off the queue indexes.
 */
export function stateOf(
  row: Columns & Pick<StoredRow, "quarantined_status">,
  data: string,
): TaskState {
  return {
    id: row.id as TaskId,
    kind: row.kind,
    status: row.quarantined_status ?? row.status,
    data,
    priority: row.priority,
    runAt: row.run_at,
    runs: row.runs,
    maxAttempts: row.max_attempts,
    fence: row.fence,
    lease:
      row.lease_owner === null || row.lease_expires_at === null
        ? null
        : { owner: row.lease_owner, token: String(row.fence), expiresAt: row.lease_expires_at },
    lastError: row.last_error,
    idempotencyKey: row.idempotency_key,
    cancelRequested: row.cancel_requested !== 0,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * The document as readers get it: the stored one with the run state spliced in (the status,
 * and the checkpoint's value and times, as the lifecycle's own rule writes them), then the
 * appended `steps`. A quarantined row's is its document as stored with its steps: nothing of
 * it is trusted. A document the run state cannot be spliced into (one that does not decode)
 * is given as stored, for its reader to find it does not decode.
 */
export function documentOf(
  row: Columns & { readonly quarantined_at?: number | null },
  steps: readonly string[] = [],
): string {
  const data = isQuarantined(row) ? row.data : withRunState(row);
  return steps.length === 0 ? data : spliceStored(row.id as TaskId, data, steps);
}

function withRunState(row: Columns): string {
  const id = row.id as TaskId;
  try {
    if (row.run_value === null) {
      // A document in another layout (the seed's put stores any text) is kept as it is while
      // the columns say nothing else: its status is read by decoding it.
      const stored = statusOf(row.data) ?? decodeStoredTask(row.data, id).status;
      if (stored === row.status) return row.data;
      return withRun(
        { id, kind: row.kind, status: stored, data: row.data },
        row.status,
        undefined,
        0,
      );
    }
    const run = { valueText: row.run_value, finishedAt: row.run_finished_at, start: true };
    return withRun(
      { id, kind: row.kind, data: row.data },
      row.status,
      run,
      row.run_started_at ?? row.updated_at,
    );
  } catch (error) {
    if (error instanceof SerializationError) return row.data;
    throw error;
  }
}
