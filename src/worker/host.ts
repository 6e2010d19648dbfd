/**
 * What a worker and its runs' contexts need of the registry, and nothing else: the worker
 * depends on this, not on TaskRegistry, so neither imports the other. Its operations take
 * values the worker already holds checked (ids and tokens from a claim, options checked once
 * when the worker was made): unlike the registry's public methods, they do not check them
 * again. Values from the handler (a result, a thrown error, a step's output) are still checked.
 */
import type { ChangeFeed } from "../backend/port.js";
import type { RegistryEventEmitter } from "../events.js";
import type { TaskId } from "../ids.js";
import type {
  ClaimedTask,
  CompleteResult,
  FailResult,
  HeartbeatResult,
  StepResult,
} from "../record.js";
import type { KindFilter } from "../task-state.js";
import type { Wakeup } from "../wakeup.js";
import type { Step } from "../wire/schema.js";

/** A step to persist, at its ordinal. */
export interface StepEntry {
  readonly ordinal: number;
  readonly step: Step;
  /** Recorded again from the checkpoint: its `step` event was emitted when it replayed. */
  readonly replayed?: boolean;
}

export interface WorkerHost {
  readonly events: RegistryEventEmitter;
  /** Notified when work becomes due in this process: wakes idle workers. */
  readonly wakeup: Wakeup;
  /** The backend's change feed, if it has one. */
  readonly changes: ChangeFeed | undefined;
  /** The registry's clock. */
  now(): number;
  /** Take back expired leases of `kinds`, as recover() does. */
  recover(kinds: KindFilter): Promise<void>;
  /** claimMany() without its takeover of expired leases: the round's recover() just did that. */
  claim(kinds: KindFilter, owner: string, leaseMs: number, limit: number): Promise<ClaimedTask[]>;
  heartbeat(id: TaskId, token: string, leaseMs: number): Promise<HeartbeatResult>;
  complete(id: TaskId, token: string, value: unknown): Promise<CompleteResult>;
  fail(id: TaskId, token: string, error: unknown, final: boolean): Promise<FailResult>;
  release(id: TaskId, token: string): Promise<void>;
  recordSteps(id: TaskId, token: string, entries: readonly StepEntry[]): Promise<StepResult>;
  nextWakeAt(kinds: KindFilter, after: number): Promise<number | undefined>;
}
