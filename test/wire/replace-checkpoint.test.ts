/** checkpoint() rewrites only the checkpoint's text: the result must equal a full re-encode. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isRegistryError } from "../../src/errors.js";
import { newTaskId } from "../../src/ids.js";
import { decodeTask, replaceCheckpoint, writeCrux, writeTask } from "../../src/wire/codec.js";
import type { Task } from "../../src/wire/schema.js";
import { makeCrux } from "../support/crux.js";

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/${name}`, import.meta.url), "utf8").trim();

function expected(task: Task, checkpoint: Task["checkpoint"]): string {
  return writeTask({ ...task, checkpoint, attempts: task.attempts + 1 });
}

describe("replaceCheckpoint", () => {
  const crux = makeCrux();
  const text = writeCrux(crux, "$");

  it.each(["task-pending.json", "task-with-checkpoint.json"])(
    "on %s equals decoding, replacing and encoding again",
    (name) => {
      const document = fixture(name);
      const row = replaceCheckpoint(document, crux, text);
      expect(row.data).toBe(expected(decodeTask(document), crux));
      expect(row.kind).toBe(decodeTask(document).kind);
      expect(row.status).toBe(decodeTask(document).status);
    },
  );

  it("keeps an input whose text mentions a checkpoint", () => {
    const task: Task = {
      id: newTaskId(),
      kind: "k",
      status: "running",
      input: { checkpoint: { steps: [] }, note: '"checkpoint":null,"attempts":9}' },
      checkpoint: null,
      attempts: 4,
    };
    expect(replaceCheckpoint(writeTask(task), crux, text).data).toBe(expected(task, crux));
  });

  it("re-encodes a document laid out otherwise (spaces, attempts first)", () => {
    const id = newTaskId();
    const document = `{ "attempts": 2, "id": "${id}", "kind": "k", "status": "done", "input": [1, 2.5], "checkpoint": null }`;
    const row = replaceCheckpoint(document, crux, text);
    expect(row.data).toBe(expected(decodeTask(document), crux));
    expect(decodeTask(row.data).attempts).toBe(3);
  });

  it("refuses a corrupt document as SERIALIZATION, whatever its checkpoint", () => {
    const document = fixture("task-with-checkpoint.json").replace('"running"', '"RUNNING"');
    const error = (() => {
      try {
        replaceCheckpoint(document, crux, text);
      } catch (e) {
        return e;
      }
    })();
    expect(isRegistryError(error) && error.code).toBe("SERIALIZATION");
  });
});
