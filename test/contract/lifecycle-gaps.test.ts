/**
 * Lifecycle rules that keep a task from being stuck or ending inconsistently, on every
 * backend: claim() takes over expired leases by itself; updateStatus(id, "running") gives the
 * task a lease; cancel() racing complete() has one outcome; a run that nobody finished is
 * recorded as such. Time only moves when a test moves the registry's injected clock.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_LEASE_MS } from "../../src/arguments.js";
import type { RegistryBackend } from "../../src/backend/port.js";
import type { RegistryEventName, RegistryEvents } from "../../src/events.js";
import { REGISTRY_EVENT_NAMES } from "../../src/events.js";
import { CruxFailure } from "../../src/failure.js";
import type { TaskId } from "../../src/ids.js";
import { timestamp } from "../../src/lifecycle.js";
import type { ClaimedTask } from "../../src/record.js";
import { TaskRegistry } from "../../src/registry.js";
import { writeTask } from "../../src/wire/codec.js";
import type { CruxErr } from "../../src/wire/schema.js";
import { BACKENDS } from "../support/backends.js";
import { makeCrux, stepRecord } from "../support/crux.js";
import { failingCas } from "../support/failing-cas.js";
import { expectCode, rejection } from "../support/rejection.js";

/** The fake clock's start: 2030-01-01T00:00:00Z. */
const T0 = Date.UTC(2030, 0, 1);

type Recorded = {
  [E in RegistryEventName]: { name: E; event: RegistryEvents[E] };
}[RegistryEventName];

describe.each(BACKENDS)("lifecycle gaps on $name", (factory) => {
  const opened: RegistryBackend[] = [];
  const clock = { now: T0 };
  let backend: RegistryBackend;
  let reg: TaskRegistry;
  let events: Recorded[];

  const advance = (ms: number): void => {
    clock.now += ms;
  };

  const open = (inner: RegistryBackend = backend): TaskRegistry => {
    const registry = new TaskRegistry(inner, {
      clock: () => clock.now,
      retryBackoff: { baseMs: 1000, maxMs: 8000 },
    });
    for (const name of REGISTRY_EVENT_NAMES) {
      registry.on(name, (event) => {
        events.push({ name, event } as Recorded);
      });
    }
    return registry;
  };

  const claimOne = async (owner = "worker-a", leaseMs = 1000): Promise<ClaimedTask> => {
    const claimed = await reg.claim("k", { owner, leaseMs });
    expect(claimed, "expected a task to claim").not.toBeNull();
    return claimed as ClaimedTask;
  };

  /** The events of one name, in order. */
  const named = <E extends RegistryEventName>(name: E): RegistryEvents[E][] =>
    events.filter((e) => e.name === name).map((e) => e.event as RegistryEvents[E]);

  beforeEach(async () => {
    clock.now = T0;
    events = [];
    backend = await factory.open();
    opened.push(backend);
    reg = open();
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
  });

  describe("claim() takes over expired leases", () => {
    it("with claim() and complete() only, every abandoned task comes back and finishes", async () => {
      const ids = await reg.submitMany(
        Array.from({ length: 29 }, (_, i) => ({ kind: "k", input: i })),
      );
      // A holder claims all of them and crashes: nobody ever calls recover().
      const abandoned = await reg.claimMany("k", { owner: "crashed", leaseMs: 1000, limit: 29 });
      expect(abandoned).toHaveLength(29);
      advance(1000);

      const finished: TaskId[] = [];
      for (let claimed = await claimOne("survivor", 60_000); ; ) {
        await reg.complete(claimed.task.id, claimed.lease.token, "ok");
        finished.push(claimed.task.id);
        const next = await reg.claim("k", { owner: "survivor", leaseMs: 60_000 });
        if (next === null) break;
        claimed = next;
      }

      expect([...finished].sort()).toEqual([...ids].sort());
      for (const id of ids) {
        const record = await reg.inspect(id);
        expect(record.task.status).toBe("done");
        expect(record.runs).toBe(2);
      }
      expect(named("reclaimed").map((e) => [e.previousOwner, e.status])).toEqual(
        ids.map(() => ["crashed", "pending"]),
      );
      expect(
        named("reclaimed")
          .map((e) => e.id)
          .sort(),
      ).toEqual([...ids].sort());
    });

    it("a task whose expired run was its last is failed for good by the claim, not returned", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 1 });
      await claimOne("crashed");
      advance(1000);
      expect(await reg.claim("k", { owner: "survivor" })).toBeNull();
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.lease).toBeNull();
      expect(record.task.checkpoint?.value).toEqual({ Err: record.lastError });
      expect(named("reclaimed")).toEqual([
        { id, kind: "k", previousOwner: "crashed", status: "failed" },
      ]);
    });

    it("a cancelled task whose holder died is failed as cancelled by the claim", async () => {
      const id = await reg.submit("k", null);
      await claimOne("crashed");
      expect(await reg.cancel(id, "user asked")).toBe(true);
      advance(1000);
      expect(await reg.claim("k", { owner: "survivor" })).toBeNull();
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.lastError).toEqual({ kind: "cancelled", reason: "user asked" });
    });

    it("takes over only expired leases, and only of the kinds it claims", async () => {
      const x = await reg.submit("x", 1);
      const live = await reg.submit("k", 2);
      const expiring = await reg.submit("k", 3);
      await reg.claim("x", { owner: "crashed", leaseMs: 1000 });
      const liveClaim = await claimOne("alive", 5000);
      await claimOne("crashed", 1000);
      advance(1000);

      const taken = await claimOne("survivor");
      expect(taken.task.id).toBe(expiring);
      expect(taken.runs).toBe(2);
      expect((await reg.inspect(live)).lease).toEqual(liveClaim.lease);
      expect((await reg.inspect(x)).task.status).toBe("running");
      expect(named("reclaimed").map((e) => e.id)).toEqual([expiring]);
      // The live holder can still finish its task.
      await reg.complete(live, liveClaim.lease.token, "done");
      expect((await reg.inspect(live)).task.status).toBe("done");
    });

    it("the crashed holder's late writes are refused once its task was taken over", async () => {
      const id = await reg.submit("k", null);
      const stale = await claimOne("stalled");
      advance(1000);
      await claimOne("survivor");
      await expectCode(reg.complete(id, stale.lease.token, "late"), "LEASE_LOST");
      await expectCode(reg.heartbeat(id, stale.lease.token), "LEASE_LOST");
      expect((await reg.inspect(id)).lease?.owner).toBe("survivor");
    });
  });

  describe('updateStatus(id, "running")', () => {
    it('gives the task a lease: owner "updateStatus", a fresh token, the default lease', async () => {
      const a = await reg.submit("k", null);
      const earlier = await reg.claim("k", { owner: "w" });
      await reg.release(a, earlier?.lease.token as string);
      advance(5);
      await reg.updateStatus(a, "running");
      const leaseA = (await reg.inspect(a)).lease;
      expect(leaseA).toEqual({
        owner: "updateStatus",
        token: expect.any(String),
        expiresAt: T0 + 5 + DEFAULT_LEASE_MS,
      });
      // Fencing: the released run's token never holds again.
      expect(leaseA?.token).not.toBe(earlier?.lease.token);
      expect((await reg.get(a)).status).toBe("running");
      expect(DEFAULT_LEASE_MS).toBe(30_000);
    });

    it("a step under its lease is refused while it has no checkpoint, and the task stays readable", async () => {
      const id = await reg.submit("k", null);
      await reg.updateStatus(id, "running");
      const { token } = (await reg.inspect(id)).lease as { token: string };
      const before = await reg.get(id);
      for (const ordinal of [0, 1]) {
        const step = stepRecord("s", 1n, "out");
        await expectCode(reg.recordStep(id, token, ordinal, step), "INVALID_STATE");
      }
      expect(await reg.get(id)).toEqual(before);
      expect((await reg.complete(id, token, 7)).status).toBe("done");
    });

    it("its last token finishes nothing once a put has ended the lease, even running again", async () => {
      const id = await reg.submit("k", null);
      await reg.updateStatus(id, "running");
      const { token } = (await reg.inspect(id)).lease as { token: string };
      const stored = (await backend.get(id)) as string;
      await backend.put(id, { kind: "k", status: "pending", data: stored }, clock.now);
      // The seed's put to running gives no lease: nobody holds the task.
      await backend.put(id, { kind: "k", status: "running", data: stored }, clock.now);
      expect((await reg.inspect(id)).lease).toBeNull();
      await expectCode(reg.complete(id, token, 1), "LEASE_LOST");
      expect((await reg.get(id)).status).toBe("running");
    });

    it("the sweep takes it back once its lease expires, saying so", async () => {
      const id = await reg.submit("k", null);
      await reg.updateStatus(id, "running");
      advance(DEFAULT_LEASE_MS - 1);
      expect(await reg.recover("k")).toEqual([]);
      advance(1);
      expect((await reg.recover("k")).map((r) => r.task.id)).toEqual([id]);
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("pending");
      expect(record.lease).toBeNull();
      expect(record.lastError).toEqual({
        kind: "step_failed",
        step: "",
        message: `lease expired: updateStatus() set the task running and nothing finished it before its lease expired at ${timestamp(T0 + DEFAULT_LEASE_MS)}`,
      });
      expect(named("reclaimed")).toEqual([
        { id, kind: "k", previousOwner: "updateStatus", status: "pending" },
      ]);
    });

    it("a claim takes it back too, and runs it", async () => {
      const id = await reg.submit("k", null);
      await reg.updateStatus(id, "running");
      expect(await reg.claim("k", { owner: "w" })).toBeNull();
      advance(DEFAULT_LEASE_MS);
      const claimed = await claimOne("w");
      expect(claimed.task.id).toBe(id);
      await reg.complete(id, claimed.lease.token, 1);
      expect((await reg.get(id)).checkpoint?.value).toEqual({ Ok: 1 });
    });

    it('recover({ owner: "updateStatus" }) takes such tasks back at once', async () => {
      const id = await reg.submit("k", null);
      await reg.updateStatus(id, "running");
      expect((await reg.recover([], { owner: "updateStatus" })).map((r) => r.task.id)).toEqual([
        id,
      ]);
    });

    it("cancel() fails it at once: no worker holds it to notice the request", async () => {
      const id = await reg.submit("k", null);
      await reg.updateStatus(id, "running");
      expect(await reg.cancel(id, "not needed")).toBe(true);
      const record = await reg.inspect(id);
      const error = { kind: "cancelled", reason: "not needed" };
      expect(record.task.status).toBe("failed");
      expect(record.lease).toBeNull();
      expect(record.lastError).toEqual(error);
      expect(record.task.checkpoint?.value).toEqual({ Err: error });
      expect(named("cancelled")).toEqual([{ id, kind: "k", wasRunning: true }]);
      expect(await reg.cancel(id)).toBe(false);
    });

    it("of a task a worker holds keeps the worker's lease", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne("worker-a");
      await reg.updateStatus(id, "running");
      expect((await reg.inspect(id)).lease).toEqual(claimed.lease);
      await reg.complete(id, claimed.lease.token, "mine");
      expect((await reg.get(id)).status).toBe("done");
    });

    it("a task put back to pending or running starts without an earlier run's cancel request", async () => {
      const id = await reg.submit("k", null);
      await claimOne();
      expect(await reg.cancel(id, "stop")).toBe(true);
      await reg.updateStatus(id, "pending");
      expect((await reg.inspect(id)).cancelRequested).toBe(false);
      const claimed = await claimOne();
      expect(await reg.complete(id, claimed.lease.token, "ran")).toEqual({ status: "done" });

      const other = await reg.submit("k", null);
      const run = await claimOne();
      await reg.cancel(other, "stop");
      await reg.fail(other, run.lease.token, new CruxFailure({ kind: "cancelled", reason: "x" }));
      expect((await reg.inspect(other)).cancelRequested).toBe(true);
      await reg.updateStatus(other, "running");
      expect((await reg.inspect(other)).cancelRequested).toBe(false);
      expect(await reg.cancel(other, "again")).toBe(true);
      expect((await reg.inspect(other)).lastError).toEqual({ kind: "cancelled", reason: "again" });
    });

    it("keeps the seed's CAS loop: retried on a lost CAS, CONFLICT with nothing written", async () => {
      const id = await reg.submit("k", null);
      reg = open(failingCas(backend, 2));
      await reg.updateStatus(id, "running");
      expect((await reg.inspect(id)).lease?.owner).toBe("updateStatus");

      const other = await reg.submit("k", null);
      const before = await backend.read(other);
      reg = open(failingCas(backend, 3));
      await expectCode(reg.updateStatus(other, "running"), "CONFLICT");
      expect(await backend.read(other)).toEqual(before);
    });

    it('a claim may not use the owner "updateStatus"', async () => {
      await reg.submit("k", null);
      const refusal = await rejection(reg.claim("k", { owner: "updateStatus" }));
      expect(refusal).toMatchObject({ code: "VALIDATION", path: "$.owner" });
      expect(await reg.pending("k")).toHaveLength(1);
    });
  });

  describe("cancel() racing the holder's complete()", () => {
    /** Everything about the task's ending that must agree. */
    const ending = async (id: TaskId) => {
      const record = await reg.inspect(id);
      return {
        status: record.task.status,
        value: record.task.checkpoint?.value,
        lastError: record.lastError,
        cancelRequested: record.cancelRequested,
        lease: record.lease,
      };
    };
    const CANCELLED: CruxErr = { kind: "cancelled", reason: "user asked" };
    const cancelledEnding = {
      status: "failed",
      value: { Err: CANCELLED },
      lastError: CANCELLED,
      cancelRequested: true,
      lease: null,
    };
    const doneEnding = {
      status: "done",
      value: { Ok: "result" },
      lastError: null,
      cancelRequested: false,
      lease: null,
    };

    it("cancel() first: complete() fails the run with the cancel's error, and says so", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      expect(await reg.cancel(id, "user asked")).toBe(true);
      const result = await reg.complete(id, claimed.lease.token, "result");
      expect(result).toEqual({ status: "failed", error: CANCELLED });
      expect(await ending(id)).toEqual(cancelledEnding);
      expect(events.map((e) => e.name)).toEqual(["submitted", "claimed", "cancelled", "failed"]);
      expect(named("failed")).toEqual([{ id, kind: "k", error: CANCELLED }]);
    });

    it("complete() first: cancel() returns false and changes nothing", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      expect(await reg.complete(id, claimed.lease.token, "result")).toEqual({ status: "done" });
      const raw = await backend.get(id);
      expect(await reg.cancel(id, "user asked")).toBe(false);
      expect(await backend.get(id)).toBe(raw);
      expect(await ending(id)).toEqual(doneEnding);
      expect(named("cancelled")).toEqual([]);
    });

    it.each([
      ["cancel() issued first", true],
      ["complete() issued first", false],
    ])(
      "concurrently (%s): one outcome, and the stored state agrees with it",
      async (_label, cancelFirst) => {
        const id = await reg.submit("k", null);
        const claimed = await claimOne();
        const cancel = () => reg.cancel(id, "user asked");
        const complete = () => reg.complete(id, claimed.lease.token, "result");
        const [cancelled, completed] = cancelFirst
          ? await Promise.all([cancel(), complete()])
          : await Promise.all([complete(), cancel()]).then(([c, k]) => [k, c] as const);
        if (cancelled) {
          expect(completed).toEqual({ status: "failed", error: CANCELLED });
          expect(await ending(id)).toEqual(cancelledEnding);
          expect(named("completed")).toEqual([]);
        } else {
          expect(completed).toEqual({ status: "done" });
          expect(await ending(id)).toEqual(doneEnding);
          expect(named("failed")).toEqual([]);
        }
      },
    );

    it("the failed event carries the stored reason, not the worker's placeholder", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      await reg.cancel(id, "user asked");
      const placeholder = new CruxFailure({ kind: "cancelled", reason: "cancel() was called" });
      expect(await reg.fail(id, claimed.lease.token, placeholder)).toMatchObject({
        status: "failed",
      });
      expect(await ending(id)).toEqual(cancelledEnding);
      expect(named("failed")).toEqual([{ id, kind: "k", error: CANCELLED }]);
    });

    it("a cancelled run that fails with its own error ends with it, event and state alike", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      await reg.cancel(id, "user asked");
      await reg.fail(id, claimed.lease.token, "disk full");
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.task.checkpoint?.value).toEqual({ Err: record.lastError });
      expect(named("failed")).toEqual([{ id, kind: "k", error: record.lastError }]);
    });
  });

  describe("a document the seed's put stored in another layout", () => {
    it("a run re-records a step its document holds instead of adding one", async () => {
      const id = await reg.submit("k", null);
      const crux = { ...makeCrux(), steps: [{ ...stepRecord("a", 1n, "one"), duration_ms: 1 }] };
      await reg.checkpoint(id, crux);
      const task = await reg.get(id);
      // The same document after a space: valid JSON, not laid out as our writer lays it out.
      await backend.put(id, { kind: "k", status: "pending", data: ` ${writeTask(task)}` }, 0);
      const claimed = await claimOne();
      await reg.recordStep(id, claimed.lease.token, 0, stepRecord("b", 2n, "two"));
      const steps = (await reg.get(id)).checkpoint?.steps ?? [];
      expect(steps.map((s) => s.name)).toEqual(["b"]);
    });

    it("a step recorded into it leaves the document in our writer's layout, as any rewrite does", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      const task = await reg.get(id);
      // Put while running: the run and its lease go on with the document as given.
      await backend.put(id, { kind: "k", status: "running", data: ` ${writeTask(task)}` }, 0);
      await reg.recordStep(id, claimed.lease.token, 0, stepRecord("a", 1n, "one"));
      expect(await backend.get(id)).toBe(writeTask(await reg.get(id)));
    });
  });

  describe("fail(id, token, error, { final: true })", () => {
    it("fails the task for good although runs remain", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 5 });
      const claimed = await claimOne();
      const result = await reg.fail(id, claimed.lease.token, "bad input", { final: true });
      expect(result.status).toBe("failed");
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.runs).toBe(1);
      expect(record.task.checkpoint?.value).toEqual({ Err: record.lastError });
      expect(named("failed")).toHaveLength(1);
      expect(named("retried")).toEqual([]);
    });

    it("without it, the same failure is retried", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 5 });
      const claimed = await claimOne();
      expect((await reg.fail(id, claimed.lease.token, "flaky", { final: false })).status).toBe(
        "pending",
      );
      expect(named("retried").map((e) => e.error)).toEqual([(await reg.inspect(id)).lastError]);
    });
  });

  describe("a run nobody finished is recorded as such", () => {
    const expiredMessage = (owner: string, run: string, at: number) =>
      `lease expired: ${owner} stopped renewing its lease during ${run} (its worker crashed, was killed or stalled); it expired at ${timestamp(at)}`;

    it.each([
      ["the sweep", (r: TaskRegistry) => r.recover("k")],
      [
        "a claim's takeover",
        (r: TaskRegistry) => r.claim("k", { owner: "other", leaseMs: 60_000 }),
      ],
    ])(
      "taken back by %s: owner and run N of M, kept while pending and after",
      async (_label, take) => {
        const id = await reg.submit("k", null, { maxAttempts: 3 });
        await claimOne("worker-a", 1000);
        advance(1500);
        await take(reg);
        const expected: CruxErr = {
          kind: "step_failed",
          step: "",
          message: expiredMessage("worker-a", "run 1 of 3", T0 + 1000),
        };
        // Pending again (the sweep) or running again (the claim): either way inspect() tells.
        // A step that threw names the step; this names none and says why the run ended.
        expect((await reg.inspect(id)).lastError).toEqual(expected);
        expect((await reg.get(id)).checkpoint?.value).toEqual({ Ok: null });
        await reg.claim("k", { owner: "other", leaseMs: 60_000 }); // runs it, if still pending
        const record = await reg.inspect(id);
        expect(record.runs).toBe(2);
        expect(record.lease?.owner).toBe("other");
        expect(record.lastError).toEqual(expected);
      },
    );

    it("out of runs: the task's final error says the lease expired", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 2 });
      await claimOne("worker-a", 1000);
      advance(1000);
      await claimOne("worker-b", 1000);
      advance(1000);
      await reg.recover("k");
      const error: CruxErr = {
        kind: "step_failed",
        step: "",
        message: expiredMessage("worker-b", "run 2 of 2", T0 + 2000),
      };
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.lastError).toEqual(error);
      expect(record.task.checkpoint?.value).toEqual({ Err: error });
    });

    it("recover({ owner }) of a live lease says the owner was declared gone", async () => {
      const id = await reg.submit("k", null);
      await claimOne("worker-a", 60_000);
      await reg.recover([], { owner: "worker-a" });
      expect((await reg.inspect(id)).lastError).toEqual({
        kind: "step_failed",
        step: "",
        message: "lease taken back: recover() was told that worker-a is gone, during run 1 of 3",
      });
    });
  });
});
