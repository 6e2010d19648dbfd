/**
 * Issue 8, item 7: whatever a caller passes to any write — deep, wide, with lone surrogates,
 * bigints at the edges of u64/i64, odd keys, values that are not JSON — the write either is
 * refused with VALIDATION and stores nothing (every task id and the target task's stored state
 * unchanged), or what it stored reads back through get, inspect and loadCheckpoint. Never a
 * stored row that cannot be read. On the memory backend and a SQLite file.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import { hasErrorCode } from "../../src/errors.js";
import { CruxFailure } from "../../src/failure.js";
import type { TaskId } from "../../src/ids.js";
import { TaskRegistry } from "../../src/registry.js";
import { decodeCrux, encodeCrux, writeCruxErr } from "../../src/wire/codec.js";
import { F64, type Json, parseJson, stringifyJson } from "../../src/wire/json.js";
import { type Crux, type CruxErr, cruxErrSchema, type Step } from "../../src/wire/schema.js";
import { objectFrom } from "../support/arbitraries.js";
import { BACKENDS } from "../support/backends.js";
import { makeCrux } from "../support/crux.js";
import { readBack as readStored } from "../support/stored.js";

// ── Arbitrary values ─────────────────────────────────────────────────────────────────────

/** Text that may hold lone surrogates (fast-check's own units never produce them). */
const text = fc.string({
  unit: fc.oneof(
    { weight: 6, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.constantFrom("\uD800", "\uDBFF", "\uDC00", "\uDFFF", "😀") },
  ),
  maxLength: 12,
});

const key = fc.oneof(
  text,
  fc.constantFrom("__proto__", "0", "", "10", "constructor", "toJSON", "a b"),
);

const EDGES = [
  0n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 63n - 1n,
  2n ** 64n - 1n,
  -(2n ** 53n),
  -(2n ** 63n),
];
const bigintEdge = fc.oneof(
  fc.constantFrom(...EDGES),
  fc.constantFrom(...EDGES).map((n) => (n < 0n ? n - 1n : n + 1n)),
);

/** Things that are not JSON, now and then. */
const notJson = fc.constantFrom<unknown>(
  undefined,
  () => 1,
  Symbol("s"),
  new Date(0),
  new Map(),
  new F64(Number.NaN),
);

const leaf = fc.oneof(
  { weight: 3, arbitrary: fc.oneof(fc.constant(null), fc.boolean(), fc.integer(), text) },
  { weight: 2, arbitrary: bigintEdge },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.double().map((x) => new F64(x)) },
  { weight: 1, arbitrary: notJson },
);

const { wide } = fc.letrec<{ wide: unknown }>((tie) => ({
  wide: fc.oneof(
    { depthSize: "small" },
    leaf,
    fc.array(tie("wide"), { maxLength: 6 }),
    fc.array(fc.tuple(key, tie("wide")), { maxLength: 6 }).map(objectFrom),
  ),
}));

/** `inner` wrapped in `levels` arrays and objects: around each entry point's limit, or far past it. */
const deep = fc
  .tuple(fc.oneof(fc.integer({ min: 500, max: 515 }), fc.constant(100_000)), fc.integer(), wide)
  .map(([levels, pattern, inner]) => {
    let value = inner;
    for (let i = 0; i < levels; i++) value = (pattern >> (i % 31)) & 1 ? [value] : { k: value };
    return value;
  });

const value = fc.oneof({ weight: 4, arbitrary: wide }, { weight: 1, arbitrary: deep });

const u64Field = fc.oneof(fc.nat(), bigintEdge);

const cruxErr: fc.Arbitrary<unknown> = fc
  .tuple(
    fc.oneof(
      fc.record({ kind: fc.constant("step_failed"), step: text, message: text }),
      fc.record({ kind: fc.constant("cancelled"), reason: text }),
      fc.record({ kind: fc.constant("denied"), step: text, reason: text }),
      fc.record({
        kind: fc.constant("low_confidence"),
        step: text,
        score: fc.double(),
        threshold: fc.double(),
      }),
      fc.record({
        kind: fc.constant("budget_exceeded"),
        budget_kind: fc.constantFrom("tokens", "calls", "cost"),
        limit: u64Field,
        actual: u64Field,
      }),
      fc.record({
        kind: fc.constant("replay_mismatch"),
        step: text,
        expected: u64Field,
        actual: u64Field,
      }),
      fc.record({ kind: fc.constantFrom("bogus", "Delegation"), step: value }),
    ),
    fc.oneof(fc.nat(3), fc.integer({ min: 505, max: 512 })),
    text,
  )
  .map(([err, delegations, to]) => {
    let out: unknown = err;
    for (let i = 0; i < delegations; i++) out = { kind: "delegation", to, source: out };
    return out;
  });

const step: fc.Arbitrary<unknown> = fc.record({
  name: text,
  kind: fc.constantFrom("plain", "branch", "Plain"),
  status: fc.constantFrom("ok", "err"),
  confidence: fc.constantFrom(0, 0.5, 1, 1e39),
  started_at: fc.constantFrom("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.123456Z"),
  duration_ms: u64Field,
  input_hash: bigintEdge,
  content_hash: fc.option(bigintEdge),
  output: value,
  error: fc.option(text),
  attempt: fc.oneof(fc.nat(), fc.constant(2 ** 32)),
  events: fc.array(value, { maxLength: 2 }),
  metadata: fc.array(fc.tuple(key, value), { maxLength: 2 }).map(objectFrom),
});

const BASE = makeCrux();

const crux: fc.Arbitrary<unknown> = fc
  .record({
    agent: text,
    value: fc.oneof(
      value.map((Ok) => ({ Ok })),
      cruxErr.map((Err) => ({ Err })),
    ),
    steps: fc.array(step, { maxLength: 2 }),
    childLevels: fc.oneof(fc.nat(2), fc.integer({ min: 250, max: 258 })),
  })
  .map(({ childLevels, ...fields }) => {
    let child: Crux = { ...BASE, steps: [] };
    const children: Crux[] = [];
    if (childLevels > 0) {
      for (let i = 1; i < childLevels; i++) child = { ...BASE, steps: [], children: [child] };
      children.push(child);
    }
    return { ...BASE, ...fields, children };
  });

/** What fail() is given: a CruxErr value, a CruxFailure of one, an Error, or a message. */
const failure = fc.oneof(
  cruxErr,
  cruxErr.map((err) => () => new CruxFailure(err as CruxErr)),
  text.map((message) => new Error(message)),
  text,
);

// ── What a write must leave behind ───────────────────────────────────────────────────────

/** JSON a value reads back as. */
const roundTrip = (v: unknown): Json => parseJson(stringifyJson(v));

const runs = { numRuns: 60 } as const;

describe.each(BACKENDS.filter((b) => b.name !== "sqlite :memory:"))(
  "every write either is refused with nothing stored or reads back, on $name",
  (factory) => {
    let backend: RegistryBackend;
    let reg: TaskRegistry;
    let kinds = 0;
    const outcomes = { stored: 0, refused: 0 };

    beforeAll(async () => {
      backend = await factory.open();
      reg = new TaskRegistry(backend);
    });
    afterAll(async () => {
      await reg.close();
      // The arbitraries reach both sides of the rule.
      expect(outcomes.stored).toBeGreaterThan(0);
      expect(outcomes.refused).toBeGreaterThan(0);
    });

    async function snapshot(id: TaskId | undefined): Promise<unknown> {
      const ids = await backend.list("");
      if (id === undefined) return { ids };
      const state = (await backend.read(id)) ?? {};
      return { ids, state };
    }

    /** Run the write; true if it stored, false if it was refused (VALIDATION, nothing written). */
    async function write(id: TaskId | undefined, act: () => unknown): Promise<boolean> {
      const before = await snapshot(id);
      try {
        await act();
      } catch (error) {
        expect(hasErrorCode(error, "VALIDATION"), String(error)).toBe(true);
        expect(await snapshot(id)).toEqual(before);
        outcomes.refused++;
        return false;
      }
      outcomes.stored++;
      return true;
    }

    const readBack = (id: TaskId) => readStored(reg, id);

    /** A new task of a kind of its own, claimed: its id and lease token. */
    async function running(maxAttempts = 1): Promise<{ id: TaskId; token: string; kind: string }> {
      const kind = `k${kinds++}`;
      const id = await reg.submit(kind, null, { maxAttempts });
      const claimed = await reg.claim(kind, { owner: "w" });
      return { id, token: claimed?.lease.token ?? "", kind };
    }

    const property = <T>(arb: fc.Arbitrary<T>, check: (v: T) => Promise<void>) =>
      fc.assert(fc.asyncProperty(arb, check), runs);

    it("submit and submitMany: input", async () => {
      await property(fc.tuple(value, value), async ([a, b]) => {
        let ids: TaskId[] = [];
        if (
          await write(
            undefined,
            async () =>
              (ids = await reg.submitMany([
                { kind: "in", input: a },
                { kind: "in", input: b },
              ])),
          )
        ) {
          const inputs = await Promise.all(ids.map(async (id) => (await readBack(id)).task.input));
          expect(inputs).toEqual([roundTrip(a), roundTrip(b)]);
        }
        let id: TaskId | undefined;
        if (await write(undefined, async () => (id = await reg.submit("in", a)))) {
          expect((await readBack(id as TaskId)).task.input).toEqual(roundTrip(a));
        }
      });
    });

    it("submit: idempotencyKey", async () => {
      await property(
        fc.oneof(text, fc.constant("k".repeat(1025)), notJson),
        async (idempotencyKey) => {
          let id: TaskId | undefined;
          if (
            await write(
              undefined,
              async () =>
                (id = await reg.submit("key", 1, { idempotencyKey: idempotencyKey as string })),
            )
          ) {
            expect((await readBack(id as TaskId)).record.idempotencyKey).toBe(
              idempotencyKey ?? null,
            );
          }
        },
      );
    });

    it("checkpoint: a Crux", async () => {
      await property(crux, async (c) => {
        const id = await reg.submit("cp", null);
        if (await write(id, () => reg.checkpoint(id, c as Crux))) {
          expect((await readBack(id)).checkpoint).toEqual(decodeCrux(encodeCrux(c as Crux)));
        }
      });
    });

    it("recordStep and recordSteps: output, events, metadata, error and the other fields", async () => {
      await property(fc.tuple(step, step), async ([one, two]) => {
        const { id, token } = await running();
        const expected = (s: unknown) =>
          decodeCrux(encodeCrux({ ...BASE, steps: [s as Step] })).steps[0];
        if (await write(id, () => reg.recordStep(id, token, 0, one as Step))) {
          expect((await readBack(id)).checkpoint?.steps).toEqual([expected(one)]);
        }
        const entries = [
          { ordinal: 0, step: two as Step },
          { ordinal: 1, step: one as Step },
        ];
        if (await write(id, () => reg.recordSteps(id, token, entries))) {
          expect((await readBack(id)).checkpoint?.steps).toEqual([expected(two), expected(one)]);
        }
        await reg.complete(id, token, null);
        await readBack(id);
      });
    });

    it("complete: the result", async () => {
      await property(value, async (v) => {
        const { id, token } = await running();
        if (await write(id, () => reg.complete(id, token, v))) {
          expect((await readBack(id)).checkpoint?.value).toEqual({ Ok: roundTrip(v ?? null) });
        }
      });
    });

    it("fail: a CruxErr, a CruxFailure, an Error or a message", async () => {
      await property(failure, async (given) => {
        const { id, token } = await running();
        // A CruxFailure checks its CruxErr when it is made: refused there, nothing is written.
        let error: unknown = given;
        if (!(await write(id, () => (error = typeof given === "function" ? given() : given))))
          return;
        if (await write(id, () => reg.fail(id, token, error))) {
          const { record, checkpoint } = await readBack(id);
          const expected: CruxErr =
            error instanceof CruxFailure
              ? error.err
              : error instanceof Error || typeof error === "string"
                ? {
                    kind: "step_failed",
                    step: "",
                    message: String(error instanceof Error ? error.message : error).toWellFormed(),
                  }
                : cruxErrSchema.parse(parseJson(writeCruxErr(cruxErrSchema.parse(error))));
          expect(record.lastError).toEqual(expected);
          expect(checkpoint?.value).toEqual({ Err: expected });
        }
      });
    });

    it("cancel: the reason, on a pending and on a running task", async () => {
      await property(
        fc.tuple(fc.oneof(text, notJson, fc.constant("r".repeat(1025))), fc.boolean()),
        async ([reason, run]) => {
          const id = run ? (await running()).id : await reg.submit("cancel", null);
          if (await write(id, () => reg.cancel(id, reason as string))) {
            expect((await readBack(id)).record.lastError).toEqual({
              kind: "cancelled",
              reason: reason ?? "cancelled",
            });
          }
        },
      );
    });

    it("claim: the lease owner", async () => {
      await property(fc.oneof(text, notJson, fc.constant("o".repeat(256))), async (owner) => {
        const kind = `k${kinds++}`;
        const id = await reg.submit(kind, null);
        if (await write(id, () => reg.claim(kind, { owner: owner as string }))) {
          expect((await readBack(id)).record.lease?.owner).toBe(owner);
        }
      });
    });
  },
);
