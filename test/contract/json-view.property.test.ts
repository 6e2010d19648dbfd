/**
 * Issue 8, item 5: JSON.stringify works on every value the registry hands out and on every
 * object or array a caller picks out of one (a step, the steps array, the input, a value, a
 * child Crux, events, metadata), however deep its u64 bigints sit; each bigint is written as
 * its decimal string. On every backend, through get, inspect, loadCheckpoint, pending, claim,
 * decodeTask/decodeCrux and a handler's ctx.input.
 */
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { newTaskId } from "../../src/ids.js";
import { TaskRegistry } from "../../src/registry.js";
import { decodeCrux, decodeTask, encodeCrux, encodeTask } from "../../src/wire/codec.js";
import { F64, type Json, parseJson } from "../../src/wire/json.js";
import { BUDGET_KINDS, type Crux, type CruxErr, type Step } from "../../src/wire/schema.js";
import {
  arbitraryCrux,
  arbitraryCruxErr,
  arbitraryJson,
  arbitraryStep,
  objectFrom,
} from "../support/arbitraries.js";
import { BACKENDS } from "../support/backends.js";
import { makeCrux } from "../support/crux.js";
import { Harness, settled } from "../worker/helpers.js";

const bigU64 = fc.bigInt(2n ** 53n, 2n ** 64n - 1n);

const { err: cruxErr } = fc.letrec<{ err: CruxErr }>((tie) => ({
  err: fc.oneof(
    { depthSize: "small" },
    arbitraryCruxErr,
    fc.record({
      kind: fc.constant("budget_exceeded" as const),
      budget_kind: fc.constantFrom(...BUDGET_KINDS),
      limit: bigU64,
      actual: fc.oneof(fc.nat(), bigU64),
    }),
    fc.record({ kind: fc.constant("delegation" as const), to: fc.string(), source: tie("err") }),
  ),
}));

const step: fc.Arbitrary<Step> = fc
  .tuple(
    arbitraryStep,
    fc.array(arbitraryJson, { maxLength: 3 }),
    fc
      .array(fc.tuple(fc.constantFrom("__proto__", "m", "0"), arbitraryJson), { maxLength: 3 })
      .map(objectFrom),
  )
  .map(([s, events, metadata]) => ({ ...s, events, metadata }));

/** Cruxes with steps holding events and metadata, bigint errors, and children at any depth. */
const { crux } = fc.letrec<{ crux: Crux }>((tie) => ({
  crux: fc
    .tuple(
      arbitraryCrux,
      fc.oneof(
        arbitraryJson.map((Ok) => ({ Ok })),
        cruxErr.map((Err) => ({ Err })),
      ),
      fc.array(step, { maxLength: 2 }),
      fc.oneof({ depthSize: "small" }, fc.constant([]), fc.array(tie("crux"), { maxLength: 2 })),
    )
    .map(([base, value, steps, children]) => ({ ...base, value, steps, children })),
}));

/**
 * JSON.stringify of `value` and of every object and array inside it does not throw, and writes
 * each bigint as its decimal string, an F64 as its number, everything else as it is.
 */
function expectStringifiable(value: unknown): void {
  if (typeof value !== "object" || value === null || value instanceof F64) return;
  expectView(value, JSON.parse(JSON.stringify(value)));
  for (const item of Object.values(value)) expectStringifiable(item);
}

function expectView(value: unknown, written: unknown): void {
  if (typeof value === "bigint") expect(written).toBe(String(value));
  else if (value instanceof F64) expect(written).toBe(value.value + 0);
  else if (typeof value === "number")
    expect(written).toBe(value + 0); // -0 is written as 0
  else if (typeof value !== "object" || value === null) expect(written).toBe(value);
  else {
    expect(Object.keys(written as object)).toEqual(Object.keys(value));
    for (const key of Object.keys(value)) {
      expectView(
        (value as Record<string, unknown>)[key],
        Object.getOwnPropertyDescriptor(written, key)?.value,
      );
    }
  }
}

const h = new Harness();
afterEach(() => h.cleanup());

describe.each(BACKENDS)("JSON.stringify of what $name hands out", (factory) => {
  it("works on every part of a task, record and checkpoint, bigints as decimal strings", async () => {
    const registry = new TaskRegistry(await factory.open());
    try {
      await fc.assert(
        fc.asyncProperty(arbitraryJson, crux, async (input, checkpoint) => {
          const kind = `k${Math.random()}`;
          const id = await registry.submit(kind, input);
          await registry.checkpoint(id, checkpoint);
          const task = await registry.get(id);
          expect(encodeTask(task)).toBe(encodeTask({ ...task, input, checkpoint }));
          expectStringifiable(task);
          expectStringifiable(await registry.inspect(id));
          expectStringifiable(await registry.loadCheckpoint(id));
          expectStringifiable(await registry.pending(kind));
          expectStringifiable(decodeTask(encodeTask(task)));
          expectStringifiable(decodeCrux(encodeCrux(checkpoint)));
          expectStringifiable(await registry.claim(kind, { owner: "w" }));
        }),
        { numRuns: 25 },
      );
    } finally {
      await registry.close();
    }
  });

  it("works on a handler's ctx.input and task, with bigints deep inside", async () => {
    const registry = h.track(new TaskRegistry(await factory.open()));
    const input: Json = { a: [{ b: 2n ** 64n - 1n }, new F64(1)], c: { d: -(2n ** 63n) } };
    const id = await registry.submit("job", input);
    await registry.checkpoint(id, makeCrux());
    const seen: unknown[] = [];
    const done = settled(registry, id);
    h.work(registry, "job", (task, ctx) => {
      seen.push(ctx.input, task);
    });
    expect(await done).toBe("completed");
    expect(JSON.stringify((seen[0] as { a: unknown }).a)).toBe('[{"b":"18446744073709551615"},1]');
    for (const value of seen) expectStringifiable(value);
  });
});

it("an object with its own toJSON key keeps it; the object holding it writes it", () => {
  const input = parseJson('{"w":{"toJSON":1,"n":18446744073709551615}}');
  const task = decodeTask(
    encodeTask({
      id: newTaskId(),
      kind: "k",
      status: "done",
      input,
      checkpoint: null,
      attempts: 0,
    }),
  );
  expect(JSON.stringify(task.input)).toBe('{"w":{"toJSON":1,"n":"18446744073709551615"}}');
  expect(Object.keys((task.input as { w: object }).w)).toEqual(["toJSON", "n"]);
});
