/**
 * Transitions edit a document laid out as we write it as text (editRun), without decoding it.
 * The text must be exactly what decoding, editing and re-encoding gives; any other layout
 * takes the decoding path.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isRegistryError } from "../../src/errors.js";
import {
  cancelTask,
  claimTask,
  completeTask,
  failTask,
  newTaskState,
  releaseTask,
  retryTask,
} from "../../src/lifecycle.js";
import type { TaskState } from "../../src/task-state.js";
import { stringifyJsonValue, writeTask } from "../../src/wire/codec.js";
import type { Task, TaskStatus } from "../../src/wire/schema.js";
import { taskLayout } from "../../src/wire/splice.js";
import { arbitraryCruxErr, arbitraryJson, arbitraryTask } from "../support/arbitraries.js";

const NOW = Date.UTC(2030, 0, 1);
const TOKEN = "token";

/** A stored state holding `task` in `status`, read back from storage (not decoded). */
function stored(task: Task, status: TaskStatus, runs = 1): TaskState {
  const document = writeTask({ ...task, status });
  const base = newTaskState(
    {
      id: task.id,
      kind: task.kind,
      inputText: "null",
      priority: 0,
      runAt: NOW,
      maxAttempts: 3,
      idempotencyKey: null,
    },
    NOW,
  );
  return {
    ...base,
    status,
    data: document,
    runs,
    lease: status === "running" ? { owner: "w", token: TOKEN, expiresAt: NOW + 1000 } : null,
  };
}

/** The same state in a layout our writer does not use: transitions must decode it. */
function relaidOut(state: TaskState): TaskState {
  return { ...state, data: `{ ${state.data.slice(1)}` };
}

const TRANSITIONS: readonly {
  readonly name: string;
  readonly from: TaskStatus;
  readonly runs?: number;
  readonly apply: (state: TaskState, value: unknown) => TaskState;
}[] = [
  {
    name: "complete",
    from: "running",
    apply: (s, v) => completeTask(s, TOKEN, stringifyJsonValue(v), NOW + 5),
  },
  {
    name: "claim",
    from: "pending",
    apply: (s) => claimTask(s, { owner: "w", now: NOW + 5, expiresAt: NOW + 1000 }),
  },
  {
    name: "fail with runs left",
    from: "running",
    apply: (s) => failTask(s, TOKEN, { kind: "step_failed", step: "", message: "x" }, NOW, NOW + 9),
  },
  {
    name: "fail for good",
    from: "running",
    runs: 3,
    apply: (s, v) => failTask(s, TOKEN, v as never, NOW + 5, NOW + 9),
  },
  { name: "release", from: "running", apply: (s) => releaseTask(s, TOKEN, NOW + 5) },
  { name: "retry", from: "failed", apply: (s) => retryTask(s, NOW + 5) },
  { name: "cancel before running", from: "pending", apply: (s) => cancelTask(s, "stop", NOW + 5) },
];

describe("transitions edit our documents as text", () => {
  it("a document with whitespace around its input is not in our layout, however it is found", () => {
    const id = "task_01J00000000000000000000000";
    const ours = writeTask({
      id,
      kind: "k",
      status: "pending",
      input: 1,
      checkpoint: null,
      attempts: 0,
    } as Task);
    expect(taskLayout(ours)).toBeDefined();
    for (const spaced of [
      ours.replace('"input":1', '"input": 1'),
      ours.replace('"input":1', '"input":1 '),
    ]) {
      expect(taskLayout(spaced)).toBeUndefined();
    }
  });

  it.each(TRANSITIONS)("$name: the same text as decoding and re-encoding", (t) => {
    const values = t.name === "fail for good" ? arbitraryCruxErr : arbitraryJson;
    fc.assert(
      fc.property(arbitraryTask, values, (task, value) => {
        const state = stored(task, t.from, t.runs);
        const asText = t.apply(state, value);
        const viaDecoding = t.apply(relaidOut(state), value);
        expect(asText.data).toBe(viaDecoding.data);
        expect({ ...asText, data: "" }).toEqual({ ...viaDecoding, data: "" });
      }),
      { numRuns: 150 },
    );
  });

  /** Valid task documents, not laid out as our writer lays them out. */
  const OTHER_LAYOUTS: readonly (readonly [string, (document: string) => string])[] = [
    ["a space after the brace", (d) => `{ ${d.slice(1)}`],
    [
      "an unknown member after the checkpoint, shaped like a checkpoint's end",
      (d) =>
        d.replace(/,"attempts":/, ',"extra":{"started_at":"x","finished_at":null},"attempts":'),
    ],
    [
      "attempts before the checkpoint",
      (d) => {
        const [, head, checkpoint, attempts] =
          /^(.*),"checkpoint":(.*),"attempts":(\d+)\}$/s.exec(d) ?? [];
        return `${head},"attempts":${attempts},"checkpoint":${checkpoint}}`;
      },
    ],
  ];

  it.each(OTHER_LAYOUTS)("decodes a document with %s, and writes it our way", (_, relayout) => {
    fc.assert(
      fc.property(arbitraryTask, arbitraryJson, (task, value) => {
        const state = stored(task, "running");
        const other = { ...state, data: relayout(state.data) };
        expect(other.data).not.toBe(state.data);
        const valueText = stringifyJsonValue(value);
        const next = completeTask(other, TOKEN, valueText, NOW);
        expect(next.data).toBe(completeTask(state, TOKEN, valueText, NOW).data);
      }),
      { numRuns: 100 },
    );
  });

  it("refuses a checkpoint that is neither null nor a Crux, as SERIALIZATION", () => {
    fc.assert(
      fc.property(arbitraryTask, (task) => {
        const state = stored({ ...task, checkpoint: null }, "pending");
        const corrupt = {
          ...state,
          data: state.data.replace('"checkpoint":null', '"checkpoint":true'),
        };
        expect(codeOf(() => cancelTask(corrupt, "stop", NOW))).toBe("SERIALIZATION");
      }),
      { numRuns: 50 },
    );
  });

  it("refuses a document whose status is not the row's, as SERIALIZATION", () => {
    fc.assert(
      fc.property(arbitraryTask, (task) => {
        const state = stored(task, "running");
        const corrupt = {
          ...state,
          data: state.data.replace('"status":"running"', '"status":"RUNNING"'),
        };
        expect(codeOf(() => completeTask(corrupt, TOKEN, "null", NOW))).toBe("SERIALIZATION");
      }),
      { numRuns: 50 },
    );
  });
});

/** The RegistryError code `act` throws, if any. */
function codeOf(act: () => unknown): unknown {
  try {
    act();
  } catch (error) {
    return isRegistryError(error) && error.code;
  }
  return undefined;
}
