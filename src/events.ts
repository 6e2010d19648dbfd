/**
 * Typed in-process events. Each is emitted by the registry instance that made the change,
 * after the change is stored. A listener that throws does not undo or block the change: its
 * error is rethrown on a later microtask, like any unhandled error.
 */
import type { TaskId } from "./ids.js";
import type { CruxErr, TaskStatus } from "./wire/schema.js";

export interface RegistryEvents {
  submitted: { readonly id: TaskId; readonly kind: string };
  claimed: {
    readonly id: TaskId;
    readonly kind: string;
    readonly owner: string;
    readonly runs: number;
  };
  /** A durable step: persisted after running, or replayed from the checkpoint. */
  step: {
    readonly id: TaskId;
    readonly name: string;
    readonly ordinal: number;
    readonly replayed: boolean;
  };
  completed: { readonly id: TaskId; readonly kind: string };
  /** A run failed and the task is failed for good (dead letter). */
  failed: { readonly id: TaskId; readonly kind: string; readonly error: CruxErr };
  /** The task is pending again: after a failed run (with its error), or by `retry(id)`. */
  retried: {
    readonly id: TaskId;
    readonly kind: string;
    readonly runAt: number;
    readonly error: CruxErr | null;
  };
  /** A running task whose worker stopped heartbeating was taken back. */
  reclaimed: {
    readonly id: TaskId;
    readonly kind: string;
    readonly previousOwner: string;
    readonly status: "pending" | "failed";
  };
  cancelled: { readonly id: TaskId; readonly kind: string; readonly wasRunning: boolean };
  /**
   * A task's stored document or last error does not decode: it was taken out of every queue,
   * its bytes kept as they are (see `quarantined()` and `repair()`).
   */
  quarantined: {
    readonly id: TaskId;
    readonly kind: string;
    readonly status: TaskStatus;
    readonly reason: string;
  };
}

export type RegistryEventName = keyof RegistryEvents;

export const REGISTRY_EVENT_NAMES = [
  "submitted",
  "claimed",
  "step",
  "completed",
  "failed",
  "retried",
  "reclaimed",
  "cancelled",
  "quarantined",
] as const satisfies readonly RegistryEventName[];
export type Listener<E extends RegistryEventName> = (event: RegistryEvents[E]) => void;

export class RegistryEventEmitter {
  readonly #listeners = new Map<RegistryEventName, Set<Listener<RegistryEventName>>>();

  /** Subscribe; returns the function that unsubscribes. */
  on<E extends RegistryEventName>(name: E, listener: Listener<E>): () => void {
    let set = this.#listeners.get(name);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(name, set);
    }
    set.add(listener as Listener<RegistryEventName>);
    return () => set.delete(listener as Listener<RegistryEventName>);
  }

  emit<E extends RegistryEventName>(name: E, event: RegistryEvents[E]): void {
    for (const listener of this.#listeners.get(name) ?? []) {
      try {
        listener(event);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
