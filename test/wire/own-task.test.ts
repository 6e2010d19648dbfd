/**
 * A claim decodes its documents without the schema (decodeOwnTask): for every task our writer
 * lays out, that gives exactly what the schema gives; any other text takes the schema's path,
 * and so its errors.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { claimTask, newTaskState } from "../../src/lifecycle.js";
import { decodeOwnTask, decodeStoredTask, writeTask } from "../../src/wire/codec.js";
import { arbitraryCrux, arbitraryTask } from "../support/arbitraries.js";
import { rejection } from "../support/rejection.js";

const NOW = Date.UTC(2030, 0, 1);

/** What decoding throws, as its code, or the task. */
function outcome(decode: () => unknown): unknown {
  try {
    return decode();
  } catch (error) {
    return { code: (error as { code?: unknown }).code, message: (error as Error).message };
  }
}

describe("decodeOwnTask", () => {
  it("gives what the schema gives, for every task our writer writes", () => {
    fc.assert(
      fc.property(arbitraryTask, fc.boolean(), (task, fresh) => {
        const document = writeTask(task);
        expect(decodeOwnTask(document, task.id)).toEqual(decodeStoredTask(document, task.id));
        if (!fresh) return;
        // As a claim leaves it: a new run's checkpoint, the fast path's case.
        const state = newTaskState(
          {
            id: task.id,
            kind: task.kind,
            inputText: JSON.stringify(null),
            priority: 0,
            runAt: NOW,
            maxAttempts: 3,
            idempotencyKey: null,
          },
          NOW,
        );
        const claimed = claimTask(state, { owner: "w", now: NOW, expiresAt: NOW + 1 }).data;
        expect(decodeOwnTask(claimed, task.id)).toEqual(decodeStoredTask(claimed, task.id));
      }),
      { numRuns: 300 },
    );
  });

  it("a checkpoint with steps or children takes the schema's path and gives the same", () => {
    fc.assert(
      fc.property(arbitraryTask, arbitraryCrux, (task, crux) => {
        const document = writeTask({ ...task, checkpoint: crux });
        expect(decodeOwnTask(document, task.id)).toEqual(decodeStoredTask(document, task.id));
      }),
      { numRuns: 100 },
    );
  });

  it("kinds and inputs that hold the layout's own markers do not mislead it", () => {
    const fragment = fc.constantFrom(
      '","status":"',
      '","kind":"',
      ',"checkpoint":null,"attempts":0}',
      ',"checkpoint":{"id":"cruxx_',
      ',"attempts":7}',
      ',"value":{"Ok":null},"steps":[],"children":[],"started_at":"',
      "\\",
      '"',
      "x",
    );
    const tricky = fc.array(fragment, { maxLength: 5 }).map((parts) => parts.join(""));
    fc.assert(
      fc.property(arbitraryTask, tricky, tricky, (task, kind, key) => {
        // Members of the input named as the task's own are written unescaped.
        const input = {
          [key]: kind,
          kind: "k",
          status: "pending",
          checkpoint: kind === "" ? null : { id: "cruxx_", agent: kind },
          attempts: 1,
        };
        const state = newTaskState(
          {
            id: task.id,
            kind: kind === "" ? "k" : kind,
            inputText: JSON.stringify(input),
            priority: 0,
            runAt: NOW,
            maxAttempts: 3,
            idempotencyKey: null,
          },
          NOW,
        );
        for (const document of [
          state.data,
          claimTask(state, { owner: "w", now: NOW, expiresAt: NOW + 1 }).data,
        ]) {
          const decoded = decodeStoredTask(document, task.id);
          expect(decodeOwnTask(document, task.id)).toEqual(decoded);
          expect(writeTask(decoded)).toBe(document);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("damaged text is refused exactly as the schema refuses it", async () => {
    fc.assert(
      fc.property(arbitraryTask, fc.nat(), fc.string({ maxLength: 3 }), (task, at, junk) => {
        const document = writeTask({ ...task, checkpoint: null });
        const cut = at % (document.length + 1);
        for (const damaged of [
          document.slice(0, cut) + junk + document.slice(cut + 1),
          document.replace(/"status":"\w+"/, '"status":"PENDING"'),
          document.replace(/"attempts":\d+/, '"attempts":4294967296'),
          document.replace(`"id":"${task.id}"`, '"id":"task_x"'),
        ]) {
          expect(outcome(() => decodeOwnTask(damaged, task.id))).toEqual(
            outcome(() => decodeStoredTask(damaged, task.id)),
          );
        }
      }),
      { numRuns: 300 },
    );
    expect(
      (await rejection(Promise.resolve().then(() => decodeOwnTask("{}", "task_x")))).code,
    ).toBe("SERIALIZATION");
  });
});
