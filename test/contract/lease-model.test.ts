/**
 * Model-based test of the lease and retry state machine on every backend: random sequences
 * of submit, clock moves, claim, heartbeat, complete, fail, release, cancel, retry and recover
 * run against the real registry (with a fake clock) and a small model. The model predicts
 * which expired leases a claim or recover takes back, which task a claim takes, and every
 * status, run count, due time and lease; a cancelled run that completes ends failed; calls
 * with a stale token must be LEASE_LOST and change nothing. After every command, every task
 * is compared with the model.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import type { RegistryEvents } from "../../src/events.js";
import type { TaskId } from "../../src/ids.js";
import { TaskRegistry } from "../../src/registry.js";
import type { Lease } from "../../src/task-state.js";
import type { CruxErr, TaskStatus } from "../../src/wire/schema.js";
import { BACKENDS } from "../support/backends.js";
import { expectCode } from "../support/rejection.js";

const T0 = Date.UTC(2030, 0, 1);
const BACKOFF = { baseMs: 10, maxMs: 100 };
/** A well-formed token no claim ever returns. */
const NEVER_ISSUED = "00000000-0000-4000-8000-000000000000";
const OWNERS = ["A", "B"] as const;
const KIND_FILTERS = ["", "a", "b", ["a", "b"]] as const;
type KindFilter = (typeof KIND_FILTERS)[number];

interface ModelTask {
  readonly id: TaskId;
  readonly kind: "a" | "b";
  readonly priority: number;
  readonly maxAttempts: number;
  status: TaskStatus;
  runs: number;
  runAt: number;
  lease: Lease | null;
  cancelRequested: boolean;
  /** Every token a claim of this task returned, oldest first. */
  readonly tokens: string[];
}

interface Model {
  now: number;
  /** In submit order. */
  readonly tasks: ModelTask[];
}

interface Real {
  readonly registry: TaskRegistry;
  readonly backend: RegistryBackend;
  readonly clock: { now: number };
  /** Every `reclaimed` event, in order. */
  readonly reclaimed: RegistryEvents["reclaimed"][];
}

type Command = fc.AsyncCommand<Model, Real>;

/** Which token a call presents: the task's latest one, or one that should not hold the lease. */
type TokenChoice = { readonly latest: true } | { readonly latest: false; readonly pick: number };

function matches(filter: KindFilter, kind: "a" | "b"): boolean {
  return filter === "" || (typeof filter === "string" ? filter === kind : filter.includes(kind));
}

/** Which task a command acts on: the index-th one with a status, or of all when none has it. */
interface Target {
  readonly status: TaskStatus | "any";
  readonly index: number;
}

function pick(model: Model, target: Target): ModelTask {
  const withStatus = model.tasks.filter((t) => t.status === target.status);
  const pool = withStatus.length > 0 ? withStatus : model.tasks;
  return pool[target.index % pool.length] as ModelTask;
}

function describeTarget(target: Target): string {
  return `${target.status}#${target.index}`;
}

/** The due pending task a claim must take: priority desc, due time asc, submit order. */
function bestDue(model: Model, filter: KindFilter): ModelTask | undefined {
  return model.tasks
    .filter((t) => t.status === "pending" && t.runAt <= model.now && matches(filter, t.kind))
    .sort((a, b) => b.priority - a.priority || a.runAt - b.runAt || (a.id < b.id ? -1 : 1))[0];
}

function tokenFor(model: Model, task: ModelTask, choice: TokenChoice): string {
  if (choice.latest) return task.tokens.at(-1) ?? NEVER_ISSUED;
  const stale = [
    ...task.tokens.filter((t) => t !== task.lease?.token),
    ...model.tasks.flatMap((t) => (t !== task && t.lease !== null ? [t.lease.token] : [])),
    NEVER_ISSUED,
  ];
  return stale[choice.pick % stale.length] as string;
}

function holds(task: ModelTask, token: string): boolean {
  return task.status === "running" && task.lease?.token === token;
}

function describeToken(choice: TokenChoice): string {
  return choice.latest ? "latest" : `stale#${choice.pick}`;
}

/** The task is finished: done or failed, with no lease. */
function finish(task: ModelTask, status: "done" | "failed"): void {
  task.status = status;
  task.lease = null;
}

/**
 * Take back the running tasks of `kinds` whose leases expired (or are held by `owner`), as
 * recover() and, before it claims, claim() do: each is pending again, or failed for good when
 * cancelled or out of runs. Returns the `reclaimed` events they must emit.
 */
function reclaim(model: Model, kinds: KindFilter, owner?: string): RegistryEvents["reclaimed"][] {
  const reclaimed: RegistryEvents["reclaimed"][] = [];
  for (const task of model.tasks) {
    const lease = task.lease;
    if (task.status !== "running" || lease === null || !matches(kinds, task.kind)) continue;
    if (lease.expiresAt > model.now && lease.owner !== owner) continue;
    if (task.cancelRequested || task.runs >= task.maxAttempts) {
      finish(task, "failed");
    } else {
      task.status = "pending";
      task.lease = null;
      task.runAt = model.now;
    }
    reclaimed.push({
      id: task.id,
      kind: task.kind,
      previousOwner: lease.owner,
      status: task.status === "pending" ? "pending" : "failed",
    });
  }
  return reclaimed;
}

/** The `reclaimed` events of the last command against those the model expects, in any order. */
function expectReclaimed(real: Real, expected: RegistryEvents["reclaimed"][]): void {
  const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : 1);
  expect([...real.reclaimed].sort(byId)).toEqual([...expected].sort(byId));
}

/** A refused call: LEASE_LOST, and the stored task is byte for byte as before. */
async function expectRefused(real: Real, id: TaskId, call: () => Promise<unknown>): Promise<void> {
  const before = await real.registry.inspect(id);
  const raw = await real.backend.get(id);
  await expectCode(call(), "LEASE_LOST");
  expect(await real.registry.inspect(id)).toEqual(before);
  expect(await real.backend.get(id)).toBe(raw);
}

/** Every task against the model (the due time only while the task can still run). */
async function expectMatches(model: Model, real: Real): Promise<void> {
  for (const task of model.tasks) {
    const record = await real.registry.inspect(task.id);
    const finished = task.status === "done" || task.status === "failed";
    expect(
      {
        status: record.task.status,
        runs: record.runs,
        runAt: finished ? task.runAt : record.runAt,
        lease: record.lease,
        cancelRequested: record.cancelRequested,
        priority: record.priority,
        maxAttempts: record.maxAttempts,
      },
      `task ${model.tasks.indexOf(task)}`,
    ).toEqual({
      status: task.status,
      runs: task.runs,
      runAt: task.runAt,
      lease: task.lease,
      cancelRequested: task.cancelRequested,
      priority: task.priority,
      maxAttempts: task.maxAttempts,
    });
  }
  const pending = model.tasks.filter((t) => t.status === "pending").map((t) => t.id);
  expect((await real.registry.pending("")).map((t) => t.id)).toEqual(pending);
}

class Submit implements Command {
  constructor(
    readonly kind: "a" | "b",
    readonly priority: number,
    readonly maxAttempts: number,
    readonly delayMs: number,
  ) {}
  check = (model: Readonly<Model>): boolean => model.tasks.length < 8;
  async run(model: Model, real: Real): Promise<void> {
    const { kind, priority, maxAttempts, delayMs } = this;
    const id = await real.registry.submit(kind, null, { priority, maxAttempts, delayMs });
    model.tasks.push({
      id,
      kind,
      priority,
      maxAttempts,
      status: "pending",
      runs: 0,
      runAt: model.now + delayMs,
      lease: null,
      cancelRequested: false,
      tokens: [],
    });
    await expectMatches(model, real);
  }
  toString = (): string =>
    `submit(${this.kind}, prio ${this.priority}, max ${this.maxAttempts}, delay ${this.delayMs})`;
}

class AdvanceClock implements Command {
  constructor(readonly ms: number) {}
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    model.now += this.ms;
    real.clock.now = model.now;
    await expectMatches(model, real);
  }
  toString = (): string => `advance(${this.ms})`;
}

class Claim implements Command {
  constructor(
    readonly kinds: KindFilter,
    readonly owner: string,
    readonly leaseMs: number,
  ) {}
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    // A claim first takes over expired leases of its kinds.
    const reclaimed = reclaim(model, this.kinds);
    const expected = bestDue(model, this.kinds);
    real.reclaimed.length = 0;
    const claimed = await real.registry.claim(this.kinds, {
      owner: this.owner,
      leaseMs: this.leaseMs,
    });
    expectReclaimed(real, reclaimed);
    if (expected === undefined) {
      expect(claimed).toBeNull();
    } else {
      expect(claimed?.task.id, "the claimed task").toBe(expected.id);
      const lease = claimed?.lease as Lease;
      expect(lease.owner).toBe(this.owner);
      expect(lease.expiresAt).toBe(model.now + this.leaseMs);
      // Fencing: no earlier lease of the task had this token.
      expect(expected.tokens.includes(lease.token)).toBe(false);
      expect(claimed?.runs).toBe(expected.runs + 1);
      expected.status = "running";
      expected.runs += 1;
      expected.lease = lease;
      expected.tokens.push(lease.token);
    }
    await expectMatches(model, real);
  }
  toString = (): string =>
    `claim(${JSON.stringify(this.kinds)}, ${this.owner}, lease ${this.leaseMs})`;
}

class Heartbeat implements Command {
  constructor(
    readonly target: Target,
    readonly token: TokenChoice,
    readonly leaseMs: number,
  ) {}
  check = (model: Readonly<Model>): boolean => model.tasks.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const task = pick(model, this.target);
    const token = tokenFor(model, task, this.token);
    if (holds(task, token)) {
      const result = await real.registry.heartbeat(task.id, token, { leaseMs: this.leaseMs });
      expect(result).toEqual({
        expiresAt: model.now + this.leaseMs,
        cancelRequested: task.cancelRequested,
      });
      task.lease = { ...(task.lease as Lease), expiresAt: model.now + this.leaseMs };
    } else {
      await expectRefused(real, task.id, () =>
        real.registry.heartbeat(task.id, token, { leaseMs: this.leaseMs }),
      );
    }
    await expectMatches(model, real);
  }
  toString = (): string =>
    `heartbeat(${describeTarget(this.target)}, ${describeToken(this.token)}, lease ${this.leaseMs})`;
}

class Complete implements Command {
  constructor(
    readonly target: Target,
    readonly token: TokenChoice,
  ) {}
  check = (model: Readonly<Model>): boolean => model.tasks.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const task = pick(model, this.target);
    const token = tokenFor(model, task, this.token);
    if (holds(task, token)) {
      const result = await real.registry.complete(task.id, token, { run: task.runs });
      if (task.cancelRequested) {
        // cancel() returned true for this run: it never ends done.
        const error = { kind: "cancelled", reason: "model" };
        expect(result).toEqual({ status: "failed", error });
        finish(task, "failed");
        expect((await real.registry.get(task.id)).checkpoint?.value).toEqual({ Err: error });
        expect((await real.registry.inspect(task.id)).lastError).toEqual(error);
      } else {
        expect(result).toEqual({ status: "done" });
        finish(task, "done");
        expect((await real.registry.get(task.id)).checkpoint?.value).toEqual({
          Ok: { run: task.runs },
        });
      }
    } else {
      await expectRefused(real, task.id, () => real.registry.complete(task.id, token, "late"));
    }
    await expectMatches(model, real);
  }
  toString = (): string => `complete(${describeTarget(this.target)}, ${describeToken(this.token)})`;
}

class Fail implements Command {
  constructor(
    readonly target: Target,
    readonly token: TokenChoice,
    readonly replayMismatch: boolean,
  ) {}
  check = (model: Readonly<Model>): boolean => model.tasks.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const task = pick(model, this.target);
    const token = tokenFor(model, task, this.token);
    const error: CruxErr = this.replayMismatch
      ? { kind: "replay_mismatch", step: "s", expected: 1, actual: 2 }
      : { kind: "step_failed", step: "s", message: `run ${task.runs}` };
    if (!holds(task, token)) {
      await expectRefused(real, task.id, () => real.registry.fail(task.id, token, error));
      await expectMatches(model, real);
      return;
    }
    const final = task.cancelRequested || task.runs >= task.maxAttempts || this.replayMismatch;
    const result = await real.registry.fail(task.id, token, error);
    if (final) {
      expect(result.status).toBe("failed");
      finish(task, "failed");
      expect((await real.registry.get(task.id)).checkpoint?.value).toEqual({ Err: error });
    } else {
      // The due time is jittered: only its range is known.
      const delay = Math.min(BACKOFF.maxMs, BACKOFF.baseMs * 2 ** (task.runs - 1));
      expect(result.status).toBe("pending");
      expect(result.runAt).toBeGreaterThanOrEqual(model.now + delay / 2);
      expect(result.runAt).toBeLessThanOrEqual(model.now + delay);
      task.status = "pending";
      task.lease = null;
      task.runAt = result.runAt;
    }
    expect((await real.registry.inspect(task.id)).lastError).toEqual(error);
    await expectMatches(model, real);
  }
  toString = (): string =>
    `fail(${describeTarget(this.target)}, ${describeToken(this.token)}${this.replayMismatch ? ", replay mismatch" : ""})`;
}

class Release implements Command {
  constructor(
    readonly target: Target,
    readonly token: TokenChoice,
  ) {}
  check = (model: Readonly<Model>): boolean => model.tasks.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const task = pick(model, this.target);
    const token = tokenFor(model, task, this.token);
    if (holds(task, token)) {
      await real.registry.release(task.id, token);
      if (task.cancelRequested) {
        // Cancelled while running: its worker gave it back, so it ends cancelled.
        finish(task, "failed");
      } else {
        task.status = "pending";
        task.lease = null;
        task.runAt = model.now;
      }
    } else {
      await expectRefused(real, task.id, () => real.registry.release(task.id, token));
    }
    await expectMatches(model, real);
  }
  toString = (): string => `release(${describeTarget(this.target)}, ${describeToken(this.token)})`;
}

class Cancel implements Command {
  constructor(readonly target: Target) {}
  check = (model: Readonly<Model>): boolean => model.tasks.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const task = pick(model, this.target);
    const before = task.status;
    const wasAsked = task.cancelRequested;
    const changed = await real.registry.cancel(task.id, "model");
    if (before === "pending") {
      expect(changed).toBe(true);
      finish(task, "failed");
      expect((await real.registry.get(task.id)).checkpoint?.value).toEqual({
        Err: { kind: "cancelled", reason: "model" },
      });
    } else if (before === "running") {
      if (!wasAsked) expect(changed).toBe(true);
      task.cancelRequested = true;
    } else {
      expect(changed).toBe(false);
    }
    await expectMatches(model, real);
  }
  toString = (): string => `cancel(${describeTarget(this.target)})`;
}

class Retry implements Command {
  constructor(readonly target: Target) {}
  check = (model: Readonly<Model>): boolean => model.tasks.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const task = pick(model, this.target);
    if (task.status === "failed") {
      await real.registry.retry(task.id);
      task.status = "pending";
      task.runs = 0;
      task.runAt = model.now;
      task.cancelRequested = false;
    } else {
      const before = await real.backend.get(task.id);
      await expectCode(real.registry.retry(task.id), "INVALID_STATE");
      expect(await real.backend.get(task.id)).toBe(before);
    }
    await expectMatches(model, real);
  }
  toString = (): string => `retry(${describeTarget(this.target)})`;
}

class Recover implements Command {
  constructor(
    readonly kinds: KindFilter,
    readonly owner: string | undefined,
  ) {}
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    const options = this.owner === undefined ? {} : { owner: this.owner };
    real.reclaimed.length = 0;
    const returned = await real.registry.recover(this.kinds, options);
    const reclaimed = reclaim(model, this.kinds, this.owner);
    const requeued = reclaimed.filter((r) => r.status === "pending").map((r) => r.id);
    expect(returned.map((r) => r.task.id).sort()).toEqual(requeued.sort());
    expectReclaimed(real, reclaimed);
    await expectMatches(model, real);
  }
  toString = (): string =>
    `recover(${JSON.stringify(this.kinds)}${this.owner === undefined ? "" : `, owner ${this.owner}`})`;
}

/** Mostly a running task: the lease commands are about those. */
const arbLeased: fc.Arbitrary<Target> = fc.record({
  status: fc.oneof(
    { weight: 3, arbitrary: fc.constant("running" as const) },
    { weight: 1, arbitrary: fc.constantFrom("any" as const, "pending" as const) },
  ),
  index: fc.nat(20),
});
/** Mostly a running task, so that a cancel does not just empty the queue. */
const arbCancelled: fc.Arbitrary<Target> = fc.record({
  status: fc.oneof(
    { weight: 4, arbitrary: fc.constant("running" as const) },
    { weight: 1, arbitrary: fc.constantFrom("pending" as const, "any" as const) },
  ),
  index: fc.nat(20),
});
const arbFailed: fc.Arbitrary<Target> = fc.record({
  status: fc.constantFrom("failed" as const, "failed" as const, "any" as const),
  index: fc.nat(20),
});
const arbToken: fc.Arbitrary<TokenChoice> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ latest: true } as const) },
  { weight: 1, arbitrary: fc.record({ latest: fc.constant(false as const), pick: fc.nat(10) }) },
);
const arbSubmit = fc
  .tuple(
    fc.constantFrom("a" as const, "b" as const),
    fc.integer({ min: 0, max: 2 }),
    fc.integer({ min: 1, max: 3 }),
    fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, fc.integer({ min: 0, max: 1500 })),
  )
  .map(([kind, priority, max, delay]) => new Submit(kind, priority, max, delay));
/** Tasks submitted before the commands run, so that most runs start with work to claim. */
const arbInitialTasks = fc.array(arbSubmit, { minLength: 1, maxLength: 5 });
const arbAdvance = fc
  .oneof(fc.integer({ min: 0, max: 2000 }), fc.constantFrom(0, 1, 10, 100))
  .map((ms) => new AdvanceClock(ms));
const arbClaim = fc
  .tuple(
    fc.constantFrom(...KIND_FILTERS),
    fc.constantFrom(...OWNERS),
    fc.integer({ min: 100, max: 1000 }),
  )
  .map(([kinds, owner, leaseMs]) => new Claim(kinds, owner, leaseMs));

const arbFail = fc
  .tuple(
    arbLeased,
    arbToken,
    fc.oneof(
      { weight: 4, arbitrary: fc.constant(false) },
      { weight: 1, arbitrary: fc.constant(true) },
    ),
  )
  .map(([t, token, mismatch]) => new Fail(t, token, mismatch));

const arbRelease = fc.tuple(arbLeased, arbToken).map(([t, token]) => new Release(t, token));
const arbCancel = arbCancelled.map((t) => new Cancel(t));

/** Some commands are listed twice or more: the others need them, or they meet rarely otherwise. */
const commands = [
  arbSubmit,
  arbSubmit,
  arbAdvance,
  arbAdvance,
  arbClaim,
  arbClaim,
  arbClaim,
  fc
    .tuple(arbLeased, arbToken, fc.integer({ min: 100, max: 1000 }))
    .map(([t, token, leaseMs]) => new Heartbeat(t, token, leaseMs)),
  fc.tuple(arbLeased, arbToken).map(([t, token]) => new Complete(t, token)),
  arbFail,
  arbFail,
  arbRelease,
  arbRelease,
  arbCancel,
  arbCancel,
  arbFailed.map((t) => new Retry(t)),
  fc
    .tuple(fc.constantFrom(...KIND_FILTERS), fc.constantFrom(undefined, ...OWNERS))
    .map(([kinds, owner]) => new Recover(kinds, owner)),
];

describe.each(BACKENDS)("lease and retry model on $name", (factory) => {
  it("agrees with the model after every command", async () => {
    await fc.assert(
      fc.asyncProperty(
        arbInitialTasks,
        fc.commands(commands, { maxCommands: 40, size: "max" }),
        async (initial, cmds) => {
          const backend = await factory.open();
          try {
            const clock = { now: T0 };
            const registry = new TaskRegistry(backend, {
              clock: () => clock.now,
              retryBackoff: BACKOFF,
            });
            const setup = async () => {
              const model: Model = { now: T0, tasks: [] };
              const real: Real = { registry, backend, clock, reclaimed: [] };
              registry.on("reclaimed", (event) => {
                real.reclaimed.push(event);
              });
              for (const submit of initial) await submit.run(model, real);
              return { model, real };
            };
            await fc.asyncModelRun(setup, cmds);
          } finally {
            await backend.close();
          }
        },
      ),
      { numRuns: 30 },
    );
  });
});
