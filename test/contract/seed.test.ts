/** The seed's tests (task.rs), ported one for one, run against every backend. */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import { hasErrorCode } from "../../src/errors.js";
import { newTaskId } from "../../src/ids.js";
import { TaskRegistry } from "../../src/registry.js";
import { decodeTask, encodeTask } from "../../src/wire/codec.js";
import { TASK_STATUSES, type TaskStatus } from "../../src/wire/schema.js";
import { BACKENDS } from "../support/backends.js";
import { makeCrux } from "../support/crux.js";
import { failingCas } from "../support/failing-cas.js";
import { expectCode } from "../support/rejection.js";

describe.each(BACKENDS)("seed tests on $name", (factory) => {
  const opened: RegistryBackend[] = [];
  const backend = async (): Promise<RegistryBackend> => {
    const b = await factory.open();
    opened.push(b);
    return b;
  };
  let reg: TaskRegistry;

  beforeEach(async () => {
    reg = new TaskRegistry(await backend());
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
  });

  it("submit_and_get", async () => {
    const id = await reg.submit("build", { repo: "cruxx" });
    const task = await reg.get(id);
    expect(task.kind).toBe("build");
    expect(task.status).toBe("pending");
    expect(task.input).toEqual({ repo: "cruxx" });
    expect(task.attempts).toBe(0);
  });

  it("get_missing_returns_not_found", async () => {
    await expectCode(reg.get(newTaskId()), "NOT_FOUND");
  });

  it("update_status", async () => {
    const id = await reg.submit("deploy", null);
    await reg.updateStatus(id, "running");
    expect((await reg.get(id)).status).toBe("running");
  });

  it("update_status_to_done", async () => {
    const id = await reg.submit("test", null);
    await reg.updateStatus(id, "done");
    expect((await reg.get(id)).status).toBe("done");
  });

  it("checkpoint_saves_cruxx_snapshot", async () => {
    const id = await reg.submit("analyze", "input");
    await reg.checkpoint(id, makeCrux());
    const task = await reg.get(id);
    expect(task.checkpoint).not.toBeNull();
    expect(task.attempts).toBe(1);
    expect(task.checkpoint?.agent).toBe("test");
    expect(task.checkpoint?.steps).toHaveLength(1);
  });

  it("load_checkpoint_returns_none_without_checkpoint", async () => {
    const id = await reg.submit("quick", null);
    expect(await reg.loadCheckpoint(id)).toBeNull();
  });

  it("load_checkpoint_returns_snapshot", async () => {
    const id = await reg.submit("long", null);
    await reg.checkpoint(id, makeCrux());
    const cp = await reg.loadCheckpoint(id);
    expect(cp?.steps[0]?.name).toBe("fetch");
  });

  it("pending_filters_by_status", async () => {
    const id1 = await reg.submit("build", 1);
    await reg.submit("build", 2);
    await reg.updateStatus(id1, "done");
    const pending = await reg.pending("");
    expect(pending).toHaveLength(1);
    expect(pending[0]?.input).toBe(2);
  });

  it("pending_filters_by_kind", async () => {
    const build1 = await reg.submit("build", 1);
    await reg.submit("build", 2);
    await reg.submit("deploy", 3);
    const buildPending = await reg.pending("build");
    expect(buildPending).toHaveLength(2);
    expect(buildPending.every((t) => t.kind === "build")).toBe(true);
    const deployPending = await reg.pending("deploy");
    expect(deployPending).toHaveLength(1);
    expect(deployPending[0]?.kind).toBe("deploy");
    await reg.updateStatus(build1, "done");
    expect(await reg.pending("build")).toHaveLength(1);
  });

  it("multiple_checkpoints_increment_attempts", async () => {
    const id = await reg.submit("retry", null);
    const crux = makeCrux();
    await reg.checkpoint(id, crux);
    await reg.checkpoint(id, crux);
    expect((await reg.get(id)).attempts).toBe(2);
  });

  it("update_status_succeeds_after_cas_retries", async () => {
    const failing = new TaskRegistry(failingCas(await backend(), 2));
    const id = await failing.submit("build", null);
    await failing.updateStatus(id, "running");
    expect((await failing.get(id)).status).toBe("running");
  });

  it("update_status_returns_conflict_when_all_retries_fail", async () => {
    const failing = new TaskRegistry(failingCas(await backend(), 3));
    const id = await failing.submit("build", null);
    await expectCode(failing.updateStatus(id, "running"), "CONFLICT");
    expect((await failing.get(id)).status).toBe("pending");
  });

  it("checkpoint_succeeds_after_cas_retries", async () => {
    const failing = new TaskRegistry(failingCas(await backend(), 2));
    const id = await failing.submit("analyze", null);
    await failing.checkpoint(id, makeCrux());
    const task = await failing.get(id);
    expect(task.checkpoint).not.toBeNull();
    expect(task.attempts).toBe(1);
  });

  it("checkpoint_returns_conflict_when_all_retries_fail", async () => {
    const failing = new TaskRegistry(failingCas(await backend(), 3));
    const id = await failing.submit("analyze", null);
    const error = await failing.checkpoint(id, makeCrux()).catch((e: unknown) => e);
    expect(hasErrorCode(error, "CONFLICT")).toBe(true);
    expect((error as Error).message).toBe(`CAS conflict on task ${id}`);
    expect((await failing.get(id)).attempts).toBe(0);
  });

  it("the CAS retry bound is configurable", async () => {
    const failing = new TaskRegistry(failingCas(await backend(), 4), { casRetries: 5 });
    const id = await failing.submit("build", null);
    await failing.updateStatus(id, "done");
    expect((await failing.get(id)).status).toBe("done");
  });

  it("task_serde_round_trip", () => {
    const task = {
      id: newTaskId(),
      kind: "test",
      status: "running" as const,
      input: { x: 1 },
      checkpoint: null,
      attempts: 3,
    };
    const back = decodeTask(encodeTask(task));
    expect(back.kind).toBe("test");
    expect(back.status).toBe("running");
    expect(back.attempts).toBe(3);
  });

  describe("proptest_task_status", () => {
    const arbStatus = fc.constantFrom(...TASK_STATUSES);
    const arbKind = fc.stringMatching(/^[a-z]{3,10}$/);
    const runs = { numRuns: 40 };

    it("update_status_persists_any_status", async () => {
      await fc.assert(
        fc.asyncProperty(arbKind, arbStatus, async (kind, status) => {
          const r = new TaskRegistry(await backend());
          const id = await r.submit(kind, null);
          await r.updateStatus(id, status);
          expect((await r.get(id)).status).toBe(status);
        }),
        runs,
      );
    });

    it("update_status_does_not_change_kind", async () => {
      await fc.assert(
        fc.asyncProperty(arbKind, arbStatus, async (kind, status) => {
          const r = new TaskRegistry(await backend());
          const id = await r.submit(kind, null);
          await r.updateStatus(id, status);
          expect((await r.get(id)).kind).toBe(kind);
        }),
        runs,
      );
    });

    it("update_status_idempotent", async () => {
      await fc.assert(
        fc.asyncProperty(arbKind, arbStatus, async (kind, status) => {
          const r = new TaskRegistry(await backend());
          const id = await r.submit(kind, null);
          await r.updateStatus(id, status);
          await r.updateStatus(id, status);
          expect((await r.get(id)).status).toBe(status);
        }),
        runs,
      );
    });

    it("pending_list_reflects_status", async () => {
      const nonPending = fc.constantFrom<TaskStatus>("running", "done", "failed");
      await fc.assert(
        fc.asyncProperty(arbKind, nonPending, async (kind, status) => {
          const r = new TaskRegistry(await backend());
          const id1 = await r.submit(kind, 1);
          const id2 = await r.submit(kind, 2);
          await r.updateStatus(id2, status);
          const pending = await r.pending(kind);
          expect(pending).toHaveLength(1);
          expect(pending[0]?.id).toBe(id1);
        }),
        runs,
      );
    });
  });
});
