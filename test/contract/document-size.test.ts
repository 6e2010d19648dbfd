/**
 * The document budget (issue 8): every write that makes or grows a task document is refused,
 * with VALIDATION at the path of the value that would take the document, appended steps
 * spliced in, past MAX_DOCUMENT_LENGTH, and writes nothing; what is accepted reads back. Each
 * step is accepted on its own, so only their sum can be over: the adapters keep it. The
 * strings here are at the real limit (a few hundred MB): the budget has no test-only knob.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import { ValidationError } from "../../src/errors.js";
import type { TaskId } from "../../src/ids.js";
import { MAX_DOCUMENT_LENGTH } from "../../src/limits.js";
import { TaskRegistry } from "../../src/registry.js";
import { writeTask } from "../../src/wire/codec.js";
import { BACKENDS } from "../support/backends.js";
import { makeCrux, stepRecord } from "../support/crux.js";
import { rejection } from "../support/rejection.js";
import { storedTasks } from "../support/stored.js";

/** Half the budget: one such value fits in a document, two do not. */
const HALF = MAX_DOCUMENT_LENGTH / 2;
const OWNER = { owner: "w", leaseMs: 60_000 };
const LONG = 120_000;

const big = (length: number): string => "x".repeat(length);

describe.each(BACKENDS)("the document budget, on $name", (factory) => {
  let backend: RegistryBackend;
  let reg: TaskRegistry;

  beforeEach(async () => {
    backend = await factory.open();
    reg = new TaskRegistry(backend, { maxInputBytes: 2 * MAX_DOCUMENT_LENGTH });
  });
  afterEach(() => reg.close());

  /** `act` is refused with VALIDATION at exactly `path`, writing nothing. */
  async function refused(act: () => unknown, path: string): Promise<void> {
    const before = await storedTasks(backend);
    const error = await rejection(Promise.resolve().then(act));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe(path);
    expect(await storedTasks(backend)).toEqual(before);
  }

  async function claimed(input: unknown = null): Promise<{ id: TaskId; token: string }> {
    const id = await reg.submit("big", input);
    const task = await reg.claim("big", OWNER);
    return { id, token: task?.lease?.token as string };
  }

  it(
    "recordStep: steps each accepted cannot add up past the budget; what was accepted reads back and completes",
    async () => {
      const { id, token } = await claimed();
      await reg.recordStep(id, token, 0, stepRecord("a", 1n, big(HALF)));
      await refused(() => reg.recordStep(id, token, 1, stepRecord("b", 2n, big(HALF))), "$.step");
      await refused(
        () =>
          reg.recordSteps(id, token, [
            { ordinal: 1, step: stepRecord("b", 2n, "small") },
            { ordinal: 2, step: stepRecord("c", 3n, big(HALF)) },
          ]),
        "$.steps[1]",
      );
      await reg.recordStep(id, token, 1, stepRecord("b", 2n, "small"));
      const task = await reg.get(id);
      expect(task.checkpoint?.steps.map((s) => s.output)).toEqual([big(HALF), "small"]);
      expect(await reg.complete(id, token, "done")).toEqual({ status: "done" });
    },
    LONG,
  );

  it(
    "recordStep: a step recorded again counts once, and a rewritten document is counted afresh",
    async () => {
      const { id, token } = await claimed();
      await reg.recordStep(id, token, 0, stepRecord("a", 1n, big(HALF)));
      await reg.recordStep(id, token, 0, stepRecord("a", 1n, "small")); // replaces the appended one
      await reg.recordStep(id, token, 1, stepRecord("b", 2n, big(HALF)));
      await reg.release(id, token); // the document now holds both steps; none is appended
      const again = (await reg.claim("big", OWNER))?.lease?.token as string;
      await refused(() => reg.recordStep(id, again, 2, stepRecord("c", 3n, big(HALF))), "$.step");
      // A step inside the document is written by rewriting it: the same budget.
      await refused(() => reg.recordStep(id, again, 0, stepRecord("a", 1n, big(HALF))), "$.step");
      await reg.recordStep(id, again, 2, stepRecord("c", 3n, "small"));
      const task = await reg.get(id);
      expect(task.checkpoint?.steps.map((s) => s.output)).toEqual(["small", big(HALF), "small"]);
    },
    LONG,
  );

  it(
    "submit, checkpoint, complete and fail refuse a value that takes the document (or the last error) over",
    async () => {
      await refused(() => reg.submit("big", big(MAX_DOCUMENT_LENGTH)), "$.input");
      const { id, token } = await claimed(big(HALF));
      const crux = { ...makeCrux(), value: { Ok: big(HALF) } };
      await refused(() => reg.checkpoint(id, crux), "$.checkpoint");
      await refused(() => reg.complete(id, token, big(HALF)), "$.value");
      const error = { kind: "step_failed" as const, step: "s", message: big(HALF) };
      await refused(() => reg.fail(id, token, error, { final: true }), "$.error");
      // A failure with runs left is kept only as the last error, read beside the document.
      const huge = { ...error, message: big(MAX_DOCUMENT_LENGTH) };
      await refused(() => reg.fail(id, token, huge), "$.error");
      expect((await reg.get(id)).input).toHaveLength(HALF);
    },
    LONG,
  );

  it(
    "the seed's put and cas refuse a whole document over the budget",
    async () => {
      const id = await reg.submit("big", null);
      const stored = (await backend.get(id)) as string;
      const task = await reg.get(id);
      const data = writeTask({ ...task, input: big(MAX_DOCUMENT_LENGTH) });
      const row = { kind: "big", status: "pending" as const, data };
      await refused(() => backend.put(id, row, Date.now()), "$.data");
      await refused(() => backend.cas(id, stored, row, { now: Date.now() }), "$.data");
    },
    LONG,
  );
});
