/**
 * The reference adapter: tasks in process memory, one whole document per task. It states the
 * port's semantics in the fewest lines — every transition is the lifecycle's own rule applied
 * to the stored state — and doubles as the model in model-based tests. Nothing survives the
 * process, and nothing else can change it, so it has no change feed.
 */
import { ClosedError, NotFoundError } from "../errors.js";
import type { TaskId } from "../ids.js";
import {
  claimTask,
  completeTask,
  overwriteDocument,
  recordSteps,
  repairDocument,
  withinBudget,
} from "../lifecycle.js";
import {
  claimOrder,
  idOrder,
  isDue,
  isSwept,
  kindMatches,
  sweepOrder,
  wakeTime,
} from "../selection.js";
import type {
  KindFilter,
  Quarantined,
  StepRecord,
  StoredDocument,
  SweepFilter,
  TaskRow,
  TaskState,
} from "../task-state.js";
import type { Batch, Change, LeaseRequest, RegistryBackend, RunEnd, SeedWrite } from "./port.js";
import { changeEach, quarantinedError } from "./quarantine.js";

interface Entry {
  readonly state: TaskState;
  /** Set while the task is quarantined; a new document (a new entry) releases it. */
  readonly quarantine?: { readonly reason: string; readonly at: number };
  /** The state before the claim that made this one, for quarantineClaimed. */
  readonly claimedFrom?: TaskState;
}

export class MemoryBackend implements RegistryBackend {
  readonly #entries = new Map<TaskId, Entry>();
  #closed = false;

  async get(id: TaskId): Promise<string | undefined> {
    return this.#entry(id)?.state.data;
  }

  async put(id: TaskId, row: TaskRow, now: number): Promise<void> {
    this.#set(overwriteDocument(this.#entry(id)?.state, id, row, { now }));
  }

  async list(prefix: string): Promise<TaskId[]> {
    return this.#states()
      .filter((s) => s.id.startsWith(prefix))
      .map((s) => s.id);
  }

  async cas(id: TaskId, expected: string, next: TaskRow, write: SeedWrite): Promise<boolean> {
    const current = this.#entry(id)?.state;
    if (current?.data !== expected) return false;
    this.#set(overwriteDocument(current, id, next, write));
    return true;
  }

  async pending(kinds: KindFilter, limit = Number.POSITIVE_INFINITY): Promise<StoredDocument[]> {
    return this.#queued()
      .filter((s) => s.status === "pending" && kindMatches(kinds, s.kind))
      .slice(0, limit)
      .map(({ id, data }) => ({ id, data }));
  }

  async quarantine(
    id: TaskId,
    expected: string,
    reason: string,
    now: number,
  ): Promise<Quarantined | undefined> {
    const entry = this.#entry(id);
    if (entry === undefined || entry.quarantine || entry.state.data !== expected) return undefined;
    return this.#quarantine(entry.state, reason, now);
  }

  async quarantineClaimed(
    id: TaskId,
    token: string,
    reason: string,
    now: number,
  ): Promise<Quarantined | undefined> {
    const entry = this.#entry(id);
    if (entry?.claimedFrom === undefined || entry.quarantine) return undefined;
    if (entry.state.lease?.token !== token) return undefined;
    // The fence stays where the claim took it: the claim's token must never hold again.
    return this.#quarantine({ ...entry.claimedFrom, fence: entry.state.fence }, reason, now);
  }

  async quarantined(kinds: KindFilter, limit = Number.POSITIVE_INFINITY): Promise<Quarantined[]> {
    this.#assertOpen();
    return [...this.#entries.values()]
      .flatMap(({ state, quarantine }) =>
        quarantine !== undefined && kindMatches(kinds, state.kind)
          ? [quarantinedTask(state, quarantine.reason, quarantine.at)]
          : [],
      )
      .sort((a, b) => a.quarantinedAt - b.quarantinedAt || idOrder(a, b))
      .slice(0, limit);
  }

  async repair(id: TaskId, row: TaskRow, now: number): Promise<void> {
    const entry = this.#entry(id);
    if (entry === undefined) throw new NotFoundError(id);
    this.#set(repairDocument(entry.state, id, row, now));
  }

  async insert(tasks: readonly TaskState[]): Promise<TaskId[]> {
    const byKey = new Map<string, TaskId>();
    for (const state of this.#states()) {
      if (state.idempotencyKey !== null) byKey.set(state.idempotencyKey, state.id);
    }
    return tasks.map((task) => {
      const existing = task.idempotencyKey === null ? undefined : byKey.get(task.idempotencyKey);
      if (existing !== undefined) return existing;
      if (task.idempotencyKey !== null) byKey.set(task.idempotencyKey, task.id);
      this.#set(task);
      return task.id;
    });
  }

  async read(id: TaskId): Promise<TaskState | undefined> {
    return this.#entry(id)?.state;
  }

  async update(id: TaskId, change: Change): Promise<TaskState> {
    return this.#set(change(this.#changeable(id)));
  }

  async claim(kinds: KindFilter, lease: LeaseRequest, limit: number): Promise<Batch> {
    const due = (wanted: number) =>
      this.#queued()
        .filter((s) => isDue(s, lease.now) && kindMatches(kinds, s.kind))
        .sort(claimOrder)
        .slice(0, wanted);
    return changeEach(
      limit,
      due,
      (s) => this.#set(claimTask(s, lease), s),
      (s, reason) => this.#quarantine(s, reason, lease.now),
    );
  }

  async complete(id: TaskId, token: string, valueText: string, now: number): Promise<RunEnd> {
    const change = withinBudget((s) => completeTask(s, token, valueText, now), "$.value");
    const { kind, status, lastError } = await this.update(id, change);
    return { kind, status: status === "done" ? "done" : "failed", lastError };
  }

  async sweep(kinds: KindFilter, filter: SweepFilter, change: Change): Promise<Batch> {
    const expired = () =>
      this.#queued()
        .filter((s) => isSwept(s, filter.now, filter.owner) && kindMatches(kinds, s.kind))
        .sort(sweepOrder);
    return changeEach(
      Number.POSITIVE_INFINITY,
      expired,
      (s) => this.#set(change(s)),
      (s, reason) => this.#quarantine(s, reason, filter.now),
    );
  }

  async appendSteps(
    id: TaskId,
    token: string,
    steps: readonly StepRecord[],
    now: number,
  ): Promise<{ cancelRequested: boolean }> {
    const state = this.#set(recordSteps(this.#changeable(id), token, steps, now));
    return { cancelRequested: state.cancelRequested };
  }

  async nextWakeAt(kinds: KindFilter, after: number): Promise<number | undefined> {
    let next: number | undefined;
    for (const state of this.#queued()) {
      const at = kindMatches(kinds, state.kind) ? wakeTime(state) : undefined;
      if (at !== undefined && at > after && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #entry(id: TaskId): Entry | undefined {
    this.#assertOpen();
    return this.#entries.get(id);
  }

  /** The task, for a change: NotFoundError if missing, refused if quarantined. */
  #changeable(id: TaskId): TaskState {
    const entry = this.#entry(id);
    if (entry === undefined) throw new NotFoundError(id);
    if (entry.quarantine !== undefined) throw quarantinedError(id);
    return entry.state;
  }

  /** Every task, in id order. */
  #states(): TaskState[] {
    this.#assertOpen();
    return [...this.#entries.values()].map((e) => e.state).sort(idOrder);
  }

  /** The tasks the queue paths see, in id order: every one not quarantined. */
  #queued(): TaskState[] {
    return this.#states().filter((s) => this.#entries.get(s.id)?.quarantine === undefined);
  }

  #quarantine(state: TaskState, reason: string, now: number): Quarantined {
    this.#entries.set(state.id, { state, quarantine: { reason, at: now } });
    return quarantinedTask(state, reason, now);
  }

  /** Store a whole state (releasing a quarantine); `claimedFrom` when a claim made it. */
  #set(state: TaskState, claimedFrom?: TaskState): TaskState {
    this.#entries.set(state.id, claimedFrom ? { state, claimedFrom } : { state });
    return state;
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError();
  }
}

function quarantinedTask(state: TaskState, reason: string, at: number): Quarantined {
  return { id: state.id, kind: state.kind, status: state.status, reason, quarantinedAt: at };
}
