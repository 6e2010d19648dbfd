/**
 * Model-based test of TaskRegistry on every backend: random command sequences run against
 * the real registry and a plain Map, and after every command the two must agree exactly.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import { isTaskId, newTaskId, type TaskId } from "../../src/ids.js";
import { TaskRegistry } from "../../src/registry.js";
import { type Crux, TASK_STATUSES, type TaskStatus } from "../../src/wire/schema.js";
import { BACKENDS } from "../support/backends.js";
import { makeCrux } from "../support/crux.js";
import { expectCode } from "../support/rejection.js";

interface ModelTask {
  readonly kind: string;
  status: TaskStatus;
  readonly input: unknown;
  attempts: number;
  checkpoint: Crux | null;
}

interface Model {
  readonly tasks: Map<TaskId, ModelTask>;
  /** Ids in submit order. */
  readonly order: TaskId[];
}

interface Real {
  readonly registry: TaskRegistry;
  readonly backend: RegistryBackend;
}

type Command = fc.AsyncCommand<Model, Real>;

const KINDS = ["a", "b", "c"] as const;

/** The id at `index` (modulo), for commands that act on an existing task. */
function pick(model: Model, index: number): TaskId {
  return model.order[index % model.order.length] as TaskId;
}

function pendingIds(model: Model, kind: string): TaskId[] {
  return model.order.filter((id) => {
    const task = model.tasks.get(id);
    return task?.status === "pending" && (kind === "" || task.kind === kind);
  });
}

async function expectTask(real: Real, id: TaskId, expected: ModelTask): Promise<void> {
  expect(await real.registry.get(id)).toEqual({ id, ...expected });
}

/** The whole registry against the whole model: every task, the id list, and all pending. */
async function expectMatches(model: Model, real: Real): Promise<void> {
  for (const id of model.order) await expectTask(real, id, model.tasks.get(id) as ModelTask);
  expect(await real.backend.list("")).toEqual(model.order);
  expect((await real.registry.pending("")).map((t) => t.id)).toEqual(pendingIds(model, ""));
}

class Submit implements Command {
  constructor(
    readonly kind: string,
    readonly input: unknown,
  ) {}
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    const id = await real.registry.submit(this.kind, this.input);
    expect(isTaskId(id)).toBe(true);
    expect(model.tasks.has(id)).toBe(false);
    const last = model.order.at(-1);
    if (last !== undefined) expect(id > last).toBe(true);
    model.tasks.set(id, {
      kind: this.kind,
      status: "pending",
      input: this.input,
      attempts: 0,
      checkpoint: null,
    });
    model.order.push(id);
    await expectMatches(model, real);
  }
  toString = (): string => `submit(${this.kind}, ${JSON.stringify(this.input)})`;
}

class UpdateStatus implements Command {
  constructor(
    readonly index: number,
    readonly status: TaskStatus,
  ) {}
  check = (model: Readonly<Model>): boolean => model.order.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const id = pick(model, this.index);
    await real.registry.updateStatus(id, this.status);
    (model.tasks.get(id) as ModelTask).status = this.status;
    await expectMatches(model, real);
  }
  toString = (): string => `updateStatus(#${this.index}, ${this.status})`;
}

class Checkpoint implements Command {
  constructor(
    readonly index: number,
    readonly agent: string,
  ) {}
  check = (model: Readonly<Model>): boolean => model.order.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const id = pick(model, this.index);
    const crux: Crux = { ...makeCrux(), agent: this.agent };
    await real.registry.checkpoint(id, crux);
    const task = model.tasks.get(id) as ModelTask;
    task.attempts += 1;
    task.checkpoint = crux;
    await expectMatches(model, real);
  }
  toString = (): string => `checkpoint(#${this.index}, agent ${JSON.stringify(this.agent)})`;
}

class Get implements Command {
  constructor(readonly index: number) {}
  check = (model: Readonly<Model>): boolean => model.order.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const id = pick(model, this.index);
    await expectTask(real, id, model.tasks.get(id) as ModelTask);
  }
  toString = (): string => `get(#${this.index})`;
}

class LoadCheckpoint implements Command {
  constructor(readonly index: number) {}
  check = (model: Readonly<Model>): boolean => model.order.length > 0;
  async run(model: Model, real: Real): Promise<void> {
    const id = pick(model, this.index);
    expect(await real.registry.loadCheckpoint(id)).toEqual(model.tasks.get(id)?.checkpoint);
  }
  toString = (): string => `loadCheckpoint(#${this.index})`;
}

const MISSING_OPERATIONS = ["get", "updateStatus", "checkpoint", "loadCheckpoint"] as const;
type MissingOperation = (typeof MISSING_OPERATIONS)[number];

/** An operation on an id never submitted: NOT_FOUND, and nothing is created. */
class Missing implements Command {
  constructor(readonly operation: MissingOperation) {}
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    const id = newTaskId();
    const { registry } = real;
    const calls: Record<MissingOperation, () => Promise<unknown>> = {
      get: () => registry.get(id),
      updateStatus: () => registry.updateStatus(id, "pending"),
      checkpoint: () => registry.checkpoint(id, makeCrux()),
      loadCheckpoint: () => registry.loadCheckpoint(id),
    };
    await expectCode(calls[this.operation](), "NOT_FOUND");
    await expectCode(registry.get(id), "NOT_FOUND");
    await expectMatches(model, real);
  }
  toString = (): string => `${this.operation}(missing)`;
}

class Pending implements Command {
  constructor(
    readonly kind: string,
    readonly limit: number | undefined,
  ) {}
  check = (): boolean => true;
  async run(model: Model, real: Real): Promise<void> {
    const options = this.limit === undefined ? {} : { limit: this.limit };
    const tasks = await real.registry.pending(this.kind, options);
    const ids = pendingIds(model, this.kind).slice(0, this.limit);
    expect(tasks.map((t) => t.id)).toEqual(ids);
    expect(tasks).toEqual(ids.map((id) => ({ id, ...model.tasks.get(id) })));
  }
  toString = (): string => `pending(${JSON.stringify(this.kind)}, limit ${this.limit})`;
}

/**
 * JSON values that decode back to an equal JS value: -0 would print as `-0.0` and an
 * integral double past 2^53 as `1e21`, both of which decode as F64, so both become 0.
 */
function plain(value: unknown): unknown {
  if (typeof value === "number") return Object.is(value, -0) || !isExactNumber(value) ? 0 : value;
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

function isExactNumber(n: number): boolean {
  return !Number.isInteger(n) || Number.isSafeInteger(n);
}

const arbIndex = fc.nat({ max: 1000 });
const COMMANDS = [
  fc
    .tuple(fc.constantFrom(...KINDS), fc.jsonValue({ maxDepth: 2 }).map(plain))
    .map(([kind, input]) => new Submit(kind, input)),
  fc
    .tuple(arbIndex, fc.constantFrom(...TASK_STATUSES))
    .map(([index, status]) => new UpdateStatus(index, status)),
  fc
    .tuple(arbIndex, fc.string({ unit: "grapheme", maxLength: 8 }))
    .map(([index, agent]) => new Checkpoint(index, agent)),
  arbIndex.map((index) => new Get(index)),
  arbIndex.map((index) => new LoadCheckpoint(index)),
  fc.constantFrom(...MISSING_OPERATIONS).map((operation) => new Missing(operation)),
  fc
    .tuple(
      fc.constantFrom("", ...KINDS, "d"),
      fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
    )
    .map(([kind, limit]) => new Pending(kind, limit)),
];

describe.each(BACKENDS)("TaskRegistry against a model on $name", (factory) => {
  it("every command sequence keeps the registry equal to the model", async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(COMMANDS, { size: "+1" }), async (commands) => {
        const backend = await factory.open();
        try {
          const setup = () => ({
            model: { tasks: new Map(), order: [] },
            real: { registry: new TaskRegistry(backend), backend },
          });
          await fc.asyncModelRun(setup, commands);
        } finally {
          await backend.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});
