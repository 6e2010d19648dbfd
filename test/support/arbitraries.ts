/** fast-check arbitraries of JSON values and wire documents, shared by the property tests. */
import fc from "fast-check";
import { newCruxId, newTaskId } from "../../src/ids.js";
import { timestamp } from "../../src/lifecycle.js";
import { F64, type Json } from "../../src/wire/json.js";
import {
  type Crux,
  type CruxErr,
  STEP_KINDS,
  type Step,
  TASK_STATUSES,
  type Task,
} from "../../src/wire/schema.js";

export const finiteDouble = fc.double({ noNaN: true, noDefaultInfinity: true });

const key = fc.oneof(
  fc.string({ unit: "binary", maxLength: 8 }),
  fc.constantFrom("__proto__", "constructor", "toString", "0", "10", "a b"),
);

/** Builds an object with own keys only, even for "__proto__". */
export function objectFrom<T>(entries: readonly (readonly [string, T])[]): Record<string, T> {
  const obj: Record<string, T> = {};
  for (const [k, v] of entries) {
    Object.defineProperty(obj, k, {
      value: v,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  }
  return obj;
}

export const { json: arbitraryJson } = fc.letrec<{ json: Json }>((tie) => ({
  json: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.maxSafeInteger(),
    fc.oneof(fc.bigInt(2n ** 53n, 2n ** 64n - 1n), fc.bigInt(-(2n ** 63n), -(2n ** 53n))),
    finiteDouble.filter((x) => !Number.isInteger(x)),
    fc.oneof(finiteDouble.filter(Number.isInteger), fc.integer()).map((x) => new F64(x)),
    fc.string({ unit: "binary" }),
    fc.array(tie("json"), { maxLength: 5 }),
    fc.array(fc.tuple(key, tie("json")), { maxLength: 5 }).map(objectFrom),
  ),
}));

const text = fc.string({ maxLength: 12 }).filter((s) => s.isWellFormed());
const at = fc.integer({ min: 0, max: Date.UTC(2100, 0, 1) }).map(timestamp);

export const arbitraryCruxErr: fc.Arbitrary<CruxErr> = fc.oneof(
  fc.record({ kind: fc.constant("step_failed" as const), step: text, message: text }),
  fc.record({ kind: fc.constant("cancelled" as const), reason: text }),
  fc.record({
    kind: fc.constant("replay_mismatch" as const),
    step: text,
    expected: fc.nat(),
    actual: fc.nat(),
  }),
);

export const arbitraryStep: fc.Arbitrary<Step> = fc.record({
  name: text,
  kind: fc.constantFrom(...STEP_KINDS),
  status: fc.constantFrom("ok" as const, "err" as const),
  confidence: fc.constantFrom(0, 0.5, 1),
  started_at: at,
  duration_ms: fc.nat(),
  input_hash: fc.bigInt(0n, 2n ** 64n - 1n),
  content_hash: fc.option(fc.bigInt(0n, 2n ** 64n - 1n)),
  output: fc.option(arbitraryJson),
  error: fc.option(text),
  attempt: fc.nat(10),
  events: fc.constant([] as Json[]),
  metadata: fc.constant({} as Record<string, Json>),
});

export const arbitraryCruxValue = fc.oneof(
  arbitraryJson.map((Ok) => ({ Ok })),
  arbitraryCruxErr.map((Err) => ({ Err })),
);

export const arbitraryCrux: fc.Arbitrary<Crux> = fc.record({
  id: fc.constant(null).map(() => newCruxId()),
  agent: text,
  value: arbitraryCruxValue,
  steps: fc.array(arbitraryStep, { maxLength: 3 }),
  children: fc.constant([]),
  started_at: at,
  finished_at: fc.option(at),
});

export const arbitraryTask: fc.Arbitrary<Task> = fc.record({
  id: fc.constant(null).map(() => newTaskId()),
  kind: text.filter((s) => s.length > 0),
  status: fc.constantFrom(...TASK_STATUSES),
  input: arbitraryJson,
  checkpoint: fc.option(arbitraryCrux),
  attempts: fc.nat(),
});
