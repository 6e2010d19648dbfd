/**
 * complete()'s one fenced statement keeps to the document budget as completeTask does: a task
 * whose kind's JSON is longer than its bytes (control characters, `\u0001`: 6 units for 1
 * byte) and whose document is near MAX_DOCUMENT_LENGTH is refused at `$.value`, not stored
 * past the budget. Memory applies completeTask itself.
 */
import { expect, it } from "vitest";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import { newTaskId } from "../../src/ids.js";
import { newTaskState } from "../../src/lifecycle.js";
import { MAX_DOCUMENT_LENGTH } from "../../src/limits.js";
import { tempDbPath } from "../support/backends.js";
import { expectCode } from "../support/rejection.js";

it("a completion that would take the document past the budget is refused", async () => {
  const kind = "\u0001".repeat(255);
  const id = newTaskId();
  const task = { id, kind, priority: 0, runAt: 0, maxAttempts: 3, idempotencyKey: null };
  const empty = newTaskState({ ...task, inputText: '""' }, 0).data.length;
  // Within the statement's old bound (the kind counted as its 255 bytes, plus 256), but the
  // new checkpoint's agent alone is 1,532 units.
  const inputText = `"${"x".repeat(MAX_DOCUMENT_LENGTH - 515 - empty)}"`;
  const backend = await SqliteBackend.open(tempDbPath());
  try {
    await backend.insert([newTaskState({ ...task, inputText }, 0)]);
    const { changed } = await backend.claim([kind], { owner: "w", now: 1, expiresAt: 1000 }, 1);
    const token = changed[0]?.lease?.token as string;
    await expectCode(backend.complete(id, token, "null", 2), "VALIDATION");
    expect((await backend.read(id))?.status).toBe("running");
  } finally {
    await backend.close();
  }
}, 120_000);
