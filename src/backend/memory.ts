/**
 * The reference adapter: tasks in process memory. It states the port's semantics in the
 * fewest lines and doubles as the model in model-based tests. Nothing survives the process.
 */
import { ClosedError, NotFoundError } from "../errors.js";
import type { TaskId } from "../ids.js";
import {
  appendedLength,
  canAppend,
  fence,
  overwriteDocument,
  repairDocument,
  stepsInDocument,
} from "../lifecycle.js";
import type {
  AppendResult,
  Batch,
  Change,
  KindFilter,
  Quarantined,
  RegistryBackend,
  SeedWrite,
  StepRecord,
  StoredDocument,
  SweepFilter,
  TaskRow,
  TaskState,
} from "./port.js";
import { changeEach, quarantinedError, spliceStored } from "./quarantine.js";

interface Entry {
  /** The state as last written; appended steps are not in its document. */
  state: TaskState;
  /** How many steps its document holds. */
  inDocument: number;
  /** Steps appended since, by ordinal. */
  steps: Map<number, string>;
  /** Their total length, each with its comma: what they add to the document as read. */
  appended: number;
  /** Set while the task is quarantined; a new document (a new entry) releases it. */
  quarantine?: { readonly reason: string; readonly at: number };
}

export class MemoryBackend implements RegistryBackend {
  readonly #entries = new Map<TaskId, Entry>();
  #closed = false;

  async get(id: TaskId): Promise<string | undefined> {
    return this.#read(id)?.data;
  }

  async put(id: TaskId, row: TaskRow): Promise<void> {
    this.#assertOpen();
    // The stored state, steps not spliced in: its document is replaced, however damaged.
    this.#write(overwriteDocument(this.#entries.get(id)?.state, id, row, Date.now()));
  }

  async list(prefix: string): Promise<TaskId[]> {
    this.#assertOpen();
    return this.#sortedIds().filter((id) => id.startsWith(prefix));
  }

  async cas(id: TaskId, expected: string, next: TaskRow, write?: SeedWrite): Promise<boolean> {
    const current = this.#read(id);
    if (current?.data !== expected) return false;
    this.#write(overwriteDocument(current, id, next, write?.now ?? Date.now(), write?.lease));
    return true;
  }

  async pending(kind: string, limit = Number.POSITIVE_INFINITY): Promise<StoredDocument[]> {
    this.#assertOpen();
    const documents: StoredDocument[] = [];
    for (const id of this.#sortedIds()) {
      if (documents.length >= limit) break;
      const entry = this.#entries.get(id) as Entry;
      const { state } = entry;
      if (
        state.status === "pending" &&
        entry.quarantine === undefined &&
        (kind === "" || state.kind === kind)
      ) {
        documents.push({ id, data: state.data });
      }
    }
    return documents;
  }

  async quarantine(
    id: TaskId,
    expected: string,
    reason: string,
    now: number,
  ): Promise<Quarantined | undefined> {
    this.#assertOpen();
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.quarantine !== undefined || entry.state.data !== expected) {
      return undefined;
    }
    return this.#quarantine(entry, reason, now);
  }

  async quarantined(kinds: KindFilter, limit = Number.POSITIVE_INFINITY): Promise<Quarantined[]> {
    this.#assertOpen();
    return [...this.#entries.values()]
      .flatMap(({ state, quarantine }) =>
        quarantine !== undefined && matches(kinds, state.kind)
          ? [quarantinedTask(state, quarantine.reason, quarantine.at)]
          : [],
      )
      .sort((a, b) => a.quarantinedAt - b.quarantinedAt || (a.id < b.id ? -1 : 1))
      .slice(0, limit);
  }

  async repair(id: TaskId, row: TaskRow): Promise<void> {
    this.#assertOpen();
    const entry = this.#entries.get(id);
    if (entry === undefined) throw new NotFoundError(id);
    this.#write(repairDocument(entry.state, id, row, Date.now()));
  }

  async insert(tasks: readonly TaskState[]): Promise<TaskId[]> {
    this.#assertOpen();
    const byKey = new Map<string, TaskId>();
    for (const { state } of this.#entries.values()) {
      if (state.idempotencyKey !== null) byKey.set(state.idempotencyKey, state.id);
    }
    return tasks.map((task) => {
      const existing = task.idempotencyKey === null ? undefined : byKey.get(task.idempotencyKey);
      if (existing !== undefined) return existing;
      if (task.idempotencyKey !== null) byKey.set(task.idempotencyKey, task.id);
      this.#write(task);
      return task.id;
    });
  }

  async read(id: TaskId): Promise<TaskState | undefined> {
    return this.#read(id);
  }

  async update(id: TaskId, change: Change): Promise<TaskState> {
    this.#assertOpen();
    const entry = this.#entries.get(id);
    if (entry === undefined) throw new NotFoundError(id);
    if (entry.quarantine !== undefined) throw quarantinedError(id);
    const current = this.#read(id) as TaskState;
    const next = change(current);
    if (next.data !== current.data) return this.#write(next);
    const { decoded: _, ...columns } = next;
    entry.state = { ...columns, data: entry.state.data }; // columns only: appended steps stay
    return next;
  }

  async claim(kinds: KindFilter, now: number, limit: number, change: Change): Promise<Batch> {
    this.#assertOpen();
    const due = (wanted: number) =>
      this.#queued()
        .filter((s) => s.status === "pending" && s.runAt <= now && matches(kinds, s.kind))
        .sort(claimOrder)
        .slice(0, wanted);
    return changeEach(limit, due, (s) => this.#change(s.id, change), this.#quarantineAt(now));
  }

  async sweep(kinds: KindFilter, filter: SweepFilter, change: Change): Promise<Batch> {
    this.#assertOpen();
    const expired = () =>
      this.#queued()
        .filter(
          (s) =>
            s.status === "running" &&
            s.lease !== null &&
            (s.lease.expiresAt <= filter.now || s.lease.owner === filter.owner) &&
            matches(kinds, s.kind),
        )
        .sort((a, b) => (a.lease?.expiresAt ?? 0) - (b.lease?.expiresAt ?? 0));
    return changeEach(
      Number.POSITIVE_INFINITY,
      expired,
      (s) => this.#change(s.id, change),
      this.#quarantineAt(filter.now),
    );
  }

  async appendSteps(
    id: TaskId,
    token: string,
    steps: readonly StepRecord[],
  ): Promise<AppendResult> {
    this.#assertOpen();
    const entry = this.#entries.get(id);
    if (entry === undefined) throw new NotFoundError(id);
    if (entry.quarantine !== undefined) throw quarantinedError(id);
    fence(entry.state, token);
    const last = entry.steps.size === 0 ? undefined : Math.max(...entry.steps.keys());
    const ordinals = steps.map((step) => step.ordinal);
    const appended = canAppend(entry.inDocument, last, ordinals);
    if (appended) {
      entry.appended = appendedLength(
        entry.state.data.length,
        entry.appended,
        steps,
        (ordinal) => entry.steps.get(ordinal)?.length,
      );
      for (const step of steps) entry.steps.set(step.ordinal, step.data);
    }
    return { appended, cancelRequested: entry.state.cancelRequested };
  }

  async nextWakeAt(kinds: KindFilter, after: number): Promise<number | undefined> {
    this.#assertOpen();
    let next: number | undefined;
    for (const state of this.#queued()) {
      if (!matches(kinds, state.kind)) continue;
      const at =
        state.status === "pending"
          ? state.runAt
          : state.status === "running"
            ? state.lease?.expiresAt
            : undefined;
      if (at !== undefined && at > after && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** The state with appended steps spliced into its document. */
  #read(id: TaskId): TaskState | undefined {
    this.#assertOpen();
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    if (entry.steps.size === 0) return entry.state;
    const steps = [...entry.steps.entries()].sort(([a], [b]) => a - b).map(([, data]) => data);
    return { ...entry.state, data: spliceStored(id, entry.state.data, steps) };
  }

  /** States of the tasks the queue paths see: every one not quarantined. */
  #queued(): TaskState[] {
    return [...this.#entries.values()].flatMap((e) => (e.quarantine ? [] : [e.state]));
  }

  /** Store `change` of the task as it reads now. */
  #change(id: TaskId, change: Change): TaskState {
    return this.#write(change(this.#read(id) as TaskState));
  }

  #quarantineAt(now: number): (state: TaskState, reason: string) => Quarantined {
    return (state, reason) => this.#quarantine(this.#entries.get(state.id) as Entry, reason, now);
  }

  #quarantine(entry: Entry, reason: string, now: number): Quarantined {
    entry.quarantine = { reason, at: now };
    return quarantinedTask(entry.state, reason, now);
  }

  /** Store a whole state; its document now holds every step. */
  #write(state: TaskState): TaskState {
    const { decoded: _, ...stored } = state; // kept only by the caller: steps appended later would outdate it
    this.#entries.set(state.id, {
      state: stored,
      inDocument: stepsInDocument(state),
      steps: new Map(),
      appended: 0,
    });
    return state;
  }

  #sortedIds(): TaskId[] {
    return [...this.#entries.keys()].sort();
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError();
  }
}

function quarantinedTask(state: TaskState, reason: string, at: number): Quarantined {
  return { id: state.id, kind: state.kind, status: state.status, reason, quarantinedAt: at };
}

function matches(kinds: KindFilter, kind: string): boolean {
  return kinds.length === 0 || kinds.includes(kind);
}

/** Negative when `a` is claimed before `b`: priority, then due time, then submit order. */
export function claimOrder(a: TaskState, b: TaskState): number {
  return b.priority - a.priority || a.runAt - b.runAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
