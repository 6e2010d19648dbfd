/**
 * What every adapter does the same way about rows that do not decode: apply a batch's change
 * to each row, quarantining the ones it cannot read instead of failing the batch, and refuse
 * to change a quarantined row. Adapters only store and select; these decide.
 */
import { hasErrorCode, SerializationError } from "../errors.js";
import type { TaskId } from "../ids.js";
import type { Quarantined, TaskState } from "../task-state.js";
import { spliceSteps } from "../wire/splice.js";
import type { Batch } from "./port.js";

/**
 * Apply `change` to each row `rows(wanted)` selects, in one transaction, until `limit` are
 * changed or none is left. A row whose change throws a SerializationError is quarantined by
 * `quarantine` instead, and the batch goes on: quarantined rows leave the selection, so
 * selecting again fills their places with the rows after them.
 */
export function changeEach<R>(
  limit: number,
  rows: (wanted: number) => readonly R[],
  change: (row: R) => TaskState,
  quarantine: (row: R, reason: string) => Quarantined,
): Batch {
  const changed: TaskState[] = [];
  const quarantined: Quarantined[] = [];
  for (let wanted = limit; wanted > 0; wanted = limit - changed.length) {
    const selected = rows(wanted);
    const quarantinedBefore = quarantined.length;
    for (const row of selected) {
      try {
        changed.push(change(row));
      } catch (error) {
        if (!hasErrorCode(error, "SERIALIZATION")) throw error;
        quarantined.push(quarantine(row, error.message));
      }
    }
    // Fewer than wanted: there is no more. None quarantined: all wanted are changed.
    if (selected.length < wanted || quarantined.length === quarantinedBefore) break;
  }
  return { changed, quarantined };
}

/** The refusal to change a quarantined task: its bytes stay as they are until it is repaired. */
export function quarantinedError(id: TaskId): SerializationError {
  return new SerializationError(
    `task ${id} is quarantined: its stored document or last error does not decode (quarantined() says why); repair() gives it a new document`,
  );
}

/**
 * The document with steps appended since it was written spliced in. A document they cannot be
 * spliced into does not decode: a SerializationError naming the task.
 */
export function spliceStored(id: TaskId, document: string, steps: readonly string[]): string {
  try {
    return spliceSteps(document, steps);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new SerializationError(`task ${id}: ${detail}`, { cause: error });
  }
}
