/**
 * Every transition of durable execution — claim, heartbeat, complete, fail, release, recover,
 * cancel, retry, steps, submit options and events — on every backend. Time only moves when a
 * test moves the registry's injected clock; nothing here depends on the wall clock.
 */
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import type { RegistryEventName, RegistryEvents } from "../../src/events.js";
import { REGISTRY_EVENT_NAMES } from "../../src/events.js";
import { CruxFailure } from "../../src/failure.js";
import { isCruxId, type TaskId } from "../../src/ids.js";
import { timestamp } from "../../src/lifecycle.js";
import type { SubmitOptions } from "../../src/options.js";
import type { ClaimedTask } from "../../src/record.js";
import { TaskRegistry } from "../../src/registry.js";
import { encodeTask } from "../../src/wire/codec.js";
import { identityHash } from "../../src/wire/hash.js";
import type { Json } from "../../src/wire/json.js";
import type { Crux, CruxErr, Step, Task } from "../../src/wire/schema.js";
import { BACKENDS } from "../support/backends.js";
import { makeCrux, stepRecord } from "../support/crux.js";
import { expectCode, rejection } from "../support/rejection.js";

/** The fake clock's start: a fixed, realistic epoch ms (2030-01-01T00:00:00Z). */
const T0 = Date.UTC(2030, 0, 1);
const BACKOFF = { baseMs: 1000, maxMs: 8000 };

type Recorded = {
  [E in RegistryEventName]: { name: E; event: RegistryEvents[E] };
}[RegistryEventName];

/** A finished step as a worker records it at `ordinal`, started at `at`. */
function makeStep(name: string, ordinal: number, output: Json, at: number): Step {
  return {
    ...stepRecord(name, identityHash(name, ordinal), output),
    started_at: timestamp(at),
    duration_ms: 5,
  };
}

describe.each(BACKENDS)("durable lifecycle on $name", (factory) => {
  const opened: RegistryBackend[] = [];
  const clock = { now: T0 };
  let backend: RegistryBackend;
  let reg: TaskRegistry;

  const advance = (ms: number): void => {
    clock.now += ms;
  };

  /** Claim a task that must be there. */
  const claimOne = async (
    kinds: string | readonly string[] = "",
    owner = "worker-a",
    leaseMs = 1000,
  ): Promise<ClaimedTask> => {
    const claimed = await reg.claim(kinds, { owner, leaseMs });
    expect(claimed, "expected a task to claim").not.toBeNull();
    return claimed as ClaimedTask;
  };

  /** Everything stored about a task, to show that a refused call changed nothing. */
  const snapshot = async (id: TaskId) => ({
    record: await reg.inspect(id),
    raw: await backend.get(id),
  });

  const recordEvents = (registry: TaskRegistry = reg): Recorded[] => {
    const events: Recorded[] = [];
    for (const name of REGISTRY_EVENT_NAMES) {
      registry.on(name, (event) => {
        events.push({ name, event } as Recorded);
      });
    }
    return events;
  };

  beforeEach(async () => {
    clock.now = T0;
    backend = await factory.open();
    opened.push(backend);
    reg = new TaskRegistry(backend, { clock: () => clock.now, retryBackoff: BACKOFF });
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await Promise.all(opened.splice(0).map((b) => b.close()));
  });

  // ── claim ──────────────────────────────────────────────────────────────────────────

  describe("claim", () => {
    it("takes higher priority first, then the earlier due time, then submit order", async () => {
      const low = await reg.submit("k", "low", { priority: -1 });
      const plain1 = await reg.submit("k", "plain1");
      const plain2 = await reg.submit("k", "plain2");
      const highLate = await reg.submit("k", "highLate", { priority: 5, runAt: T0 });
      const highEarly = await reg.submit("k", "highEarly", { priority: 5, runAt: T0 - 500 });
      const earlyPlain = await reg.submit("k", "earlyPlain", { runAt: new Date(T0 - 1000) });
      const claimed: TaskId[] = [];
      for (let i = 0; i < 6; i++) claimed.push((await claimOne()).task.id);
      expect(claimed).toEqual([highEarly, highLate, earlyPlain, plain1, plain2, low]);
      expect(await reg.claim("", { owner: "worker-a" })).toBeNull();
    });

    it("skips tasks that are not yet due until the clock reaches them", async () => {
      const delayed = await reg.submit("k", 1, { delayMs: 500 });
      const atDate = await reg.submit("k", 2, { runAt: new Date(T0 + 1000) });
      const atNumber = await reg.submit("k", 3, { runAt: T0 + 2000 });
      expect((await reg.inspect(delayed)).runAt).toBe(T0 + 500);
      expect((await reg.inspect(atDate)).runAt).toBe(T0 + 1000);
      expect((await reg.inspect(atNumber)).runAt).toBe(T0 + 2000);

      expect(await reg.claim("", { owner: "w" })).toBeNull();
      advance(499);
      expect(await reg.claim("", { owner: "w" })).toBeNull();
      // Leases that outlast the test: a claim takes over expired ones.
      advance(1);
      expect((await claimOne("", "worker-a", 60_000)).task.id).toBe(delayed);
      expect(await reg.claim("", { owner: "w" })).toBeNull();
      advance(499);
      expect(await reg.claim("", { owner: "w" })).toBeNull();
      advance(1);
      expect((await claimOne("", "worker-a", 60_000)).task.id).toBe(atDate);
      advance(999);
      expect(await reg.claim("", { owner: "w" })).toBeNull();
      advance(1);
      expect((await claimOne()).task.id).toBe(atNumber);
    });

    it("a due task of lower priority is claimed while a higher one is not yet due", async () => {
      const urgentLater = await reg.submit("k", 1, { priority: 9, delayMs: 100 });
      const now = await reg.submit("k", 2);
      expect((await claimOne()).task.id).toBe(now);
      advance(100);
      expect((await claimOne()).task.id).toBe(urgentLater);
    });

    it("filters by a kind, an array of kinds, or none", async () => {
      const build = await reg.submit("build", 1);
      const deploy = await reg.submit("deploy", 2);
      const test = await reg.submit("test", 3);
      const lint = await reg.submit("lint", 4);
      expect((await claimOne("deploy")).task.id).toBe(deploy);
      expect(await reg.claim("deploy", { owner: "w" })).toBeNull();
      expect((await claimOne(["nope", "test"])).task.id).toBe(test);
      expect(await reg.claim(["nope", "test", "deploy"], { owner: "w" })).toBeNull();
      expect((await claimOne("")).task.id).toBe(build);
      expect((await claimOne([])).task.id).toBe(lint);
      expect(await reg.claim([], { owner: "w" })).toBeNull();
    });

    it("across several kinds still takes the best task by priority, due time and submit order", async () => {
      await reg.submit("a", 1);
      const b = await reg.submit("b", 2, { priority: 1 });
      const c = await reg.submit("c", 3, { runAt: T0 - 10 });
      expect((await claimOne(["a", "b", "c"])).task.id).toBe(b);
      expect((await claimOne(["a", "c"])).task.id).toBe(c);
    });

    it("returns null when nothing is due", async () => {
      expect(await reg.claim("", { owner: "w" })).toBeNull();
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      await reg.complete(id, claimed.lease.token);
      await reg.submit("other", null);
      expect(await reg.claim("k", { owner: "w" })).toBeNull();
    });

    it("moves the task to running under a new lease, counting the run", async () => {
      const id = await reg.submit("build", { repo: "cruxx" });
      advance(7);
      const claimed = await reg.claim("build", { owner: "worker-a", leaseMs: 1500 });
      expect(claimed).not.toBeNull();
      const { task, lease } = claimed as ClaimedTask;
      expect(task.id).toBe(id);
      expect(task.status).toBe("running");
      expect(lease).toEqual({ owner: "worker-a", token: expect.any(String), expiresAt: T0 + 1507 });
      expect(lease.token.length).toBeGreaterThan(0);
      expect(claimed?.runs).toBe(1);

      const got = await reg.get(id);
      expect(got.status).toBe("running");
      expect(got.input).toEqual({ repo: "cruxx" });
      expect(got.attempts).toBe(0);
      expect(JSON.parse((await backend.get(id)) as string).status).toBe("running");
      const head = got.checkpoint as Crux;
      expect(head).not.toBeNull();
      expect(isCruxId(head.id)).toBe(true);
      expect(head).toEqual({
        id: head.id,
        agent: "build",
        value: { Ok: null },
        steps: [],
        children: [],
        started_at: timestamp(T0 + 7),
        finished_at: null,
      });

      const record = await reg.inspect(id);
      expect(record.task).toEqual(got);
      expect(record.lease).toEqual(lease);
      expect(record.runs).toBe(1);
      expect(record.cancelRequested).toBe(false);
      expect(await reg.pending("")).toEqual([]);
    });

    it("issues a fresh token on every claim", async () => {
      const id = await reg.submit("k", null);
      const first = await claimOne();
      await reg.release(id, first.lease.token);
      const second = await claimOne("", "worker-b");
      expect(second.task.id).toBe(id);
      expect(second.lease.token).not.toBe(first.lease.token);
      expect(second.lease.owner).toBe("worker-b");
      expect(second.runs).toBe(2);
    });

    it("keeps checkpoint count and steps of an existing checkpoint, resetting its value", async () => {
      const id = await reg.submit("analyze", null);
      const crux = makeCrux();
      await reg.checkpoint(id, crux);
      const claimed = await claimOne();
      expect(claimed.runs).toBe(1);
      expect(claimed.task.attempts).toBe(1);
      expect(claimed.task.checkpoint).toEqual({
        ...crux,
        value: { Ok: null },
        finished_at: null,
      });
    });

    it("validates its options", async () => {
      await reg.submit("k", null);
      expect((await rejection(reg.claim("", { owner: "" }))).path).toBe("$.owner");
      expect((await rejection(reg.claim("", { owner: "w", leaseMs: 99 }))).path).toBe("$.leaseMs");
      expect((await rejection(reg.claim(["ok", ""], { owner: "w" }))).path).toBe("$.kinds[1]");
      expect((await reg.pending("")).length).toBe(1);
      const claimed = await reg.claim("", { owner: "w" });
      expect(claimed?.lease.expiresAt).toBe(T0 + 30_000); // the default lease
    });
  });

  // ── heartbeat ──────────────────────────────────────────────────────────────────────

  describe("heartbeat", () => {
    it("extends the lease, so a sweep past the old expiry leaves the task alone", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne("", "worker-a", 1000);
      advance(600);
      expect(await reg.heartbeat(id, claimed.lease.token, { leaseMs: 2000 })).toEqual({
        expiresAt: T0 + 2600,
        cancelRequested: false,
      });
      expect((await reg.inspect(id)).lease).toEqual({ ...claimed.lease, expiresAt: T0 + 2600 });
      advance(1400); // past the first expiry, before the new one
      expect(await reg.recover()).toEqual([]);
      expect((await reg.inspect(id)).task.status).toBe("running");
      expect((await reg.inspect(id)).runs).toBe(1);
    });

    it("with a wrong token is LEASE_LOST and changes nothing", async () => {
      const id = await reg.submit("k", null);
      await claimOne();
      const before = await snapshot(id);
      advance(10);
      await expectCode(reg.heartbeat(id, randomUUID()), "LEASE_LOST");
      expect(await snapshot(id)).toEqual(before);
    });

    it("of a task that is not running is LEASE_LOST", async () => {
      const id = await reg.submit("k", null);
      await expectCode(reg.heartbeat(id, randomUUID()), "LEASE_LOST");
      const claimed = await claimOne();
      await reg.complete(id, claimed.lease.token);
      const before = await snapshot(id);
      await expectCode(reg.heartbeat(id, claimed.lease.token), "LEASE_LOST");
      expect(await snapshot(id)).toEqual(before);
    });
  });

  // ── complete ───────────────────────────────────────────────────────────────────────

  describe("complete", () => {
    it("with the lease's token finishes the task as done with {Ok: value}", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      advance(250);
      await reg.complete(id, claimed.lease.token, { answer: 42, list: [1, "two"] });
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("done");
      expect(JSON.parse((await backend.get(id)) as string).status).toBe("done");
      expect(record.lease).toBeNull();
      expect(record.runs).toBe(1);
      expect(record.task.checkpoint).toEqual({
        ...(claimed.task.checkpoint as Crux),
        value: { Ok: { answer: 42, list: [1, "two"] } },
        finished_at: timestamp(T0 + 250),
      });
      expect(await reg.claim("", { owner: "w" })).toBeNull();
      // The lease ended with the run: a second complete is refused.
      await expectCode(reg.complete(id, claimed.lease.token, "again"), "LEASE_LOST");
      expect((await reg.inspect(id)).task).toEqual(record.task);
    });

    it("without a value stores {Ok: null}", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      await reg.complete(id, claimed.lease.token);
      expect((await reg.get(id)).checkpoint?.value).toEqual({ Ok: null });
    });

    it("with a value that is not JSON is VALIDATION and changes nothing", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      const before = await snapshot(id);
      await expectCode(reg.complete(id, claimed.lease.token, { f: () => 1 }), "VALIDATION");
      expect(await snapshot(id)).toEqual(before);
    });

    it("a stalled worker's late calls are refused once its task was taken over", async () => {
      const id = await reg.submit("k", { job: 1 });
      const a = await claimOne("", "worker-a", 1000);
      await reg.recordStep(id, a.lease.token, 0, makeStep("fetch", 0, "a0", clock.now));
      advance(1001);
      const reclaimed = await reg.recover();
      expect(reclaimed.map((r) => r.task.id)).toEqual([id]);
      expect(reclaimed[0]?.task.status).toBe("pending");
      expect(reclaimed[0]?.lease).toBeNull();
      const b = await claimOne("", "worker-b", 1000);
      expect(b.task.id).toBe(id);
      expect(b.runs).toBe(2);
      expect(b.task.checkpoint?.steps.map((s) => s.output)).toEqual(["a0"]);

      const before = await snapshot(id);
      const stale = a.lease.token;
      await expectCode(reg.complete(id, stale, "late"), "LEASE_LOST");
      await expectCode(reg.fail(id, stale, "late"), "LEASE_LOST");
      await expectCode(reg.heartbeat(id, stale), "LEASE_LOST");
      await expectCode(reg.release(id, stale), "LEASE_LOST");
      await expectCode(
        reg.recordStep(id, stale, 1, makeStep("late", 1, "a1", clock.now)),
        "LEASE_LOST",
      );
      await expectCode(
        reg.recordStep(id, stale, 0, makeStep("fetch", 0, "a0'", clock.now)),
        "LEASE_LOST",
      );
      expect(await snapshot(id)).toEqual(before);

      await reg.complete(id, b.lease.token, "b's result");
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("done");
      expect(record.task.checkpoint?.value).toEqual({ Ok: "b's result" });
      expect(record.task.checkpoint?.steps.map((s) => s.output)).toEqual(["a0"]);
    });
  });

  // ── fail ───────────────────────────────────────────────────────────────────────────

  describe("fail", () => {
    it("while runs remain puts the task back after an exponential, capped, jittered backoff", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 6 });
      const error: CruxErr = { kind: "step_failed", step: "fetch", message: "network error" };
      for (const delay of [1000, 2000, 4000, 8000, 8000]) {
        const claimed = await claimOne();
        advance(3);
        const result = await reg.fail(id, claimed.lease.token, error);
        expect(result.status).toBe("pending");
        expect(result.runAt).toBeGreaterThanOrEqual(clock.now + delay / 2);
        expect(result.runAt).toBeLessThanOrEqual(clock.now + delay);
        const record = await reg.inspect(id);
        expect(record.task.status).toBe("pending");
        expect((await reg.get(id)).status).toBe("pending");
        expect(record.runAt).toBe(result.runAt);
        expect(record.lease).toBeNull();
        expect(record.lastError).toEqual(error);
        expect(record.task.checkpoint?.value).toEqual({ Ok: null });
        expect(record.task.checkpoint?.finished_at).toBeNull();
        // Not claimable before its due time, claimable at it.
        clock.now = result.runAt - 1;
        expect(await reg.claim("", { owner: "w" })).toBeNull();
        clock.now = result.runAt;
      }
      const last = await claimOne();
      expect(last.runs).toBe(6);
      const result = await reg.fail(id, last.lease.token, error);
      expect(result.status).toBe("failed");
      expect((await reg.inspect(id)).task.status).toBe("failed");
    });

    it("jitters each delay between half and all of it", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 5 });
      vi.spyOn(Math, "random").mockReturnValue(0);
      let claimed = await claimOne();
      expect((await reg.fail(id, claimed.lease.token, "x")).runAt).toBe(clock.now + 500);
      clock.now += 500;
      vi.spyOn(Math, "random").mockReturnValue(1 - Number.EPSILON);
      claimed = await claimOne();
      expect((await reg.fail(id, claimed.lease.token, "x")).runAt).toBe(clock.now + 2000);
    });

    it("on the last run fails the task for good, keeping its error and steps", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 2 });
      let claimed = await claimOne();
      await reg.recordStep(id, claimed.lease.token, 0, makeStep("fetch", 0, "r1", clock.now));
      const first = await reg.fail(id, claimed.lease.token, "first failure");
      expect(first.status).toBe("pending");
      clock.now = first.runAt;
      claimed = await claimOne();
      expect(claimed.runs).toBe(2);
      await reg.recordStep(id, claimed.lease.token, 1, makeStep("parse", 1, "r2", clock.now));
      advance(40);
      const error: CruxErr = { kind: "denied", step: "parse", reason: "policy" };
      const result = await reg.fail(id, claimed.lease.token, error);
      expect(result.status).toBe("failed");

      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(JSON.parse((await backend.get(id)) as string).status).toBe("failed");
      expect(record.lease).toBeNull();
      expect(record.runs).toBe(2);
      expect(record.lastError).toEqual(error);
      const checkpoint = record.task.checkpoint as Crux;
      expect(checkpoint.value).toEqual({ Err: error });
      expect(checkpoint.finished_at).toBe(timestamp(clock.now));
      expect(checkpoint.steps.map((s) => s.output)).toEqual(["r1", "r2"]);
      advance(1_000_000);
      expect(await reg.claim("", { owner: "w" })).toBeNull();
      await expectCode(reg.fail(id, claimed.lease.token, "again"), "LEASE_LOST");
    });

    it("takes the error as a CruxErr, a CruxFailure, an Error or a message", async () => {
      const cases: [unknown, CruxErr][] = [
        [
          { kind: "budget_exceeded", budget_kind: "tokens", limit: 100, actual: 101 },
          { kind: "budget_exceeded", budget_kind: "tokens", limit: 100, actual: 101 },
        ],
        [
          new CruxFailure({ kind: "low_confidence", step: "s", score: 0.4, threshold: 0.7 }),
          { kind: "low_confidence", step: "s", score: 0.4, threshold: 0.7 },
        ],
        [new Error("boom"), { kind: "step_failed", step: "", message: "boom" }],
        ["plain message", { kind: "step_failed", step: "", message: "plain message" }],
      ];
      for (const [thrown, expected] of cases) {
        const id = await reg.submit("k", null, { maxAttempts: 1 });
        const claimed = await claimOne();
        expect((await reg.fail(id, claimed.lease.token, thrown)).status).toBe("failed");
        const record = await reg.inspect(id);
        expect(record.lastError).toEqual(expected);
        expect(record.task.checkpoint?.value).toEqual({ Err: expected });
      }
    });

    it("with a malformed CruxErr is VALIDATION and changes nothing", async () => {
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      const before = await snapshot(id);
      await expectCode(reg.fail(id, claimed.lease.token, { kind: "nonsense" }), "VALIDATION");
      expect(await snapshot(id)).toEqual(before);
    });

    it("with a replay mismatch fails the task at once, although runs remain", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 5 });
      const claimed = await claimOne();
      const error: CruxErr = {
        kind: "replay_mismatch",
        step: "fetch",
        expected: 2124207233303399209n,
        actual: 6231848832354474281n,
      };
      const result = await reg.fail(id, claimed.lease.token, error);
      expect(result.status).toBe("failed");
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.runs).toBe(1);
      expect(record.lastError).toEqual(error);
      expect(record.task.checkpoint?.value).toEqual({ Err: error });
      expect(await backend.get(id)).toContain(
        '{"Err":{"kind":"replay_mismatch","step":"fetch","expected":2124207233303399209,"actual":6231848832354474281}}',
      );
    });

    it("with a stale token is LEASE_LOST and changes nothing", async () => {
      const id = await reg.submit("k", null);
      await claimOne();
      const before = await snapshot(id);
      await expectCode(reg.fail(id, randomUUID(), "x"), "LEASE_LOST");
      expect(await snapshot(id)).toEqual(before);
    });
  });

  // ── release ────────────────────────────────────────────────────────────────────────

  describe("release", () => {
    it("gives the task back: pending, due now, no lease", async () => {
      const id = await reg.submit("k", null, { priority: 2 });
      const claimed = await claimOne();
      advance(300);
      await reg.release(id, claimed.lease.token);
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("pending");
      expect((await reg.get(id)).status).toBe("pending");
      expect(record.lease).toBeNull();
      expect(record.runAt).toBe(T0 + 300);
      expect(record.runs).toBe(1);
      expect(record.priority).toBe(2);
      expect((await reg.pending("")).map((t) => t.id)).toEqual([id]);
      const again = await claimOne();
      expect(again.task.id).toBe(id);
      expect(again.runs).toBe(2);
    });

    it("of a task asked to cancel ends it as cancelled instead of queueing it again", async () => {
      // A worker shutting down releases its runs; one that was cancelled must not run again.
      const id = await reg.submit("k", null, { maxAttempts: 3 });
      const claimed = await claimOne();
      expect(await reg.cancel(id, "user asked")).toBe(true);
      await reg.release(id, claimed.lease.token);
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.lease).toBeNull();
      expect(record.lastError?.kind).toBe("cancelled");
      expect(record.task.checkpoint?.value).toEqual({ Err: record.lastError });
      expect(await reg.claim("", { owner: "worker-b" })).toBeNull();
    });

    it("with a stale token is LEASE_LOST and changes nothing", async () => {
      const id = await reg.submit("k", null);
      const first = await claimOne();
      await reg.release(id, first.lease.token);
      await expectCode(reg.release(id, first.lease.token), "LEASE_LOST"); // pending now
      await claimOne("", "worker-b");
      const before = await snapshot(id);
      await expectCode(reg.release(id, first.lease.token), "LEASE_LOST"); // someone else's
      expect(await snapshot(id)).toEqual(before);
    });
  });

  // ── recover ────────────────────────────────────────────────────────────────────────

  describe("recover", () => {
    it("takes back expired leases as pending and leaves live ones alone", async () => {
      const short = await reg.submit("k", 1);
      const long = await reg.submit("k", 2);
      await claimOne("", "worker-a", 1000);
      const longClaim = await claimOne("", "worker-b", 5000);
      advance(1001);
      const longBefore = await snapshot(long);
      const reclaimed = await reg.recover();
      expect(reclaimed.map((r) => r.task.id)).toEqual([short]);
      expect(reclaimed[0]).toEqual(await reg.inspect(short));
      const record = await reg.inspect(short);
      expect(record.task.status).toBe("pending");
      expect(record.lease).toBeNull();
      expect(record.runAt).toBe(T0 + 1001);
      expect(record.runs).toBe(1);
      expect(await snapshot(long)).toEqual(longBefore);
      expect((await reg.inspect(long)).lease).toEqual(longClaim.lease);
      expect(await reg.recover()).toEqual([]);
      expect((await claimOne()).task.id).toBe(short);
    });

    it("a lease has expired once the clock reaches its expiry time", async () => {
      const id = await reg.submit("k", null);
      await claimOne("", "worker-a", 1000);
      advance(999);
      expect(await reg.recover()).toEqual([]);
      advance(1);
      expect((await reg.recover()).map((r) => r.task.id)).toEqual([id]);
    });

    it("fails for good a task whose expired run was its last, and does not return it", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 1 });
      await claimOne("", "worker-a", 1000);
      advance(1001);
      expect(await reg.recover()).toEqual([]);
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.lease).toBeNull();
      expect(record.lastError?.kind).toBe("step_failed");
      expect(record.task.checkpoint?.value).toEqual({ Err: record.lastError });
      expect(record.task.checkpoint?.finished_at).toBe(timestamp(T0 + 1001));
      expect(await reg.claim("", { owner: "w" })).toBeNull();
    });

    it("fails a cancelled task whose worker stopped, as cancelled", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 3 });
      await claimOne("", "worker-a", 1000);
      expect(await reg.cancel(id, "user asked")).toBe(true);
      advance(1001);
      expect(await reg.recover()).toEqual([]);
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.lastError?.kind).toBe("cancelled");
      expect(record.task.checkpoint?.value).toEqual({ Err: record.lastError });
    });

    it("with an owner also takes back that owner's live leases, and no one else's", async () => {
      const a1 = await reg.submit("k", 1);
      const a2 = await reg.submit("k", 2, { maxAttempts: 1 });
      const b1 = await reg.submit("k", 3);
      await claimOne("", "worker-a", 60_000);
      await claimOne("", "worker-a", 60_000);
      await claimOne("", "worker-b", 60_000);
      advance(10);
      const bBefore = await snapshot(b1);
      const reclaimed = await reg.recover([], { owner: "worker-a" });
      // a2 was on its last run: failed, so not among the returned pending ones.
      expect(reclaimed.map((r) => r.task.id)).toEqual([a1]);
      expect((await reg.inspect(a1)).task.status).toBe("pending");
      expect((await reg.inspect(a1)).runAt).toBe(T0 + 10);
      expect((await reg.inspect(a2)).task.status).toBe("failed");
      expect(await snapshot(b1)).toEqual(bBefore);
    });

    it("only takes back tasks of the given kinds", async () => {
      const x = await reg.submit("x", 1);
      const y = await reg.submit("y", 2);
      await claimOne("x", "w", 1000);
      await claimOne("y", "w", 1000);
      advance(2000);
      expect((await reg.recover("x")).map((r) => r.task.id)).toEqual([x]);
      expect((await reg.inspect(y)).task.status).toBe("running");
      expect((await reg.recover(["z", "y"])).map((r) => r.task.id)).toEqual([y]);
    });
  });

  // ── cancel ─────────────────────────────────────────────────────────────────────────

  describe("cancel", () => {
    it("fails a pending task at once, as cancelled, and it is never claimed", async () => {
      const id = await reg.submit("k", null);
      advance(5);
      expect(await reg.cancel(id, "not needed")).toBe(true);
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("failed");
      expect((await reg.get(id)).status).toBe("failed");
      const cancelled: CruxErr = { kind: "cancelled", reason: "not needed" };
      expect(record.task.checkpoint?.value).toEqual({ Err: cancelled });
      expect(record.task.checkpoint?.finished_at).toBe(timestamp(T0 + 5));
      expect(record.lastError).toEqual(cancelled);
      expect(record.runs).toBe(0);
      expect(await reg.pending("")).toEqual([]);
      advance(1_000_000);
      expect(await reg.claim("", { owner: "w" })).toBeNull();
      expect(await reg.recover()).toEqual([]);
    });

    it("asks a running task to stop; its failure is then final although runs remain", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 3 });
      const claimed = await claimOne();
      expect(await reg.cancel(id, "stop")).toBe(true);
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("running");
      expect(record.cancelRequested).toBe(true);
      expect(record.lease).toEqual(claimed.lease);
      expect((await reg.heartbeat(id, claimed.lease.token)).cancelRequested).toBe(true);
      const cancelled: CruxErr = { kind: "cancelled", reason: "stop" };
      const result = await reg.fail(id, claimed.lease.token, cancelled);
      expect(result.status).toBe("failed");
      const after = await reg.inspect(id);
      expect(after.task.status).toBe("failed");
      expect(after.runs).toBe(1);
      expect(after.task.checkpoint?.value).toEqual({ Err: cancelled });
      advance(1_000_000);
      expect(await reg.claim("", { owner: "w" })).toBeNull();
    });

    it("even a generic failure of a cancelled run is final", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 3 });
      const claimed = await claimOne();
      await reg.cancel(id);
      expect((await reg.fail(id, claimed.lease.token, new Error("aborted"))).status).toBe("failed");
    });

    it("of a finished task returns false and changes nothing", async () => {
      const done = await reg.submit("k", 1);
      const claimed = await claimOne();
      await reg.complete(done, claimed.lease.token, "ok");
      const failed = await reg.submit("k", 2, { maxAttempts: 1 });
      const claimed2 = await claimOne();
      await reg.fail(failed, claimed2.lease.token, "bad");
      for (const id of [done, failed]) {
        const before = await snapshot(id);
        advance(10);
        expect(await reg.cancel(id, "too late")).toBe(false);
        expect(await snapshot(id)).toEqual(before);
      }
    });

    it("of a missing task is NOT_FOUND", async () => {
      await expectCode(reg.cancel("task_01ARZ3NDEKTSV4RRFFQ69G5FAV"), "NOT_FOUND");
    });
  });

  // ── retry ──────────────────────────────────────────────────────────────────────────

  describe("retry", () => {
    it("puts a failed task back: pending now, runs reset, checkpoint reopened", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 1 });
      let claimed = await claimOne();
      await reg.recordStep(id, claimed.lease.token, 0, makeStep("fetch", 0, "out", clock.now));
      await reg.fail(id, claimed.lease.token, "broken");
      advance(5000);
      await reg.retry(id);
      const record = await reg.inspect(id);
      expect(record.task.status).toBe("pending");
      expect((await reg.get(id)).status).toBe("pending");
      expect(record.runs).toBe(0);
      expect(record.runAt).toBe(T0 + 5000);
      expect(record.lease).toBeNull();
      expect(record.cancelRequested).toBe(false);
      expect(record.task.checkpoint?.value).toEqual({ Ok: null });
      expect(record.task.checkpoint?.finished_at).toBeNull();
      expect(record.task.checkpoint?.steps.map((s) => s.output)).toEqual(["out"]);
      // A fresh allowance of runs: one more run, then failed again.
      claimed = await claimOne();
      expect(claimed.runs).toBe(1);
      expect((await reg.fail(id, claimed.lease.token, "still broken")).status).toBe("failed");
    });

    it("puts a cancelled task back, no longer cancelled", async () => {
      const id = await reg.submit("k", null, { maxAttempts: 2 });
      const claimed = await claimOne();
      await reg.cancel(id);
      await reg.fail(id, claimed.lease.token, "stopped");
      await reg.retry(id);
      expect((await reg.inspect(id)).cancelRequested).toBe(false);
      const again = await claimOne();
      expect((await reg.heartbeat(id, again.lease.token)).cancelRequested).toBe(false);
      expect((await reg.fail(id, again.lease.token, "transient")).status).toBe("pending");
    });

    it("of a pending, running or done task is INVALID_STATE and changes nothing", async () => {
      const pending = await reg.submit("k", 1, { delayMs: 10 });
      const running = await reg.submit("k", 2);
      const done = await reg.submit("k", 3);
      await claimOne();
      const c = await claimOne();
      await reg.complete(done, c.lease.token);
      for (const id of [pending, running, done]) {
        const before = await snapshot(id);
        await expectCode(reg.retry(id), "INVALID_STATE");
        expect(await snapshot(id)).toEqual(before);
      }
    });
  });

  // ── submit options ─────────────────────────────────────────────────────────────────

  describe("submit options", () => {
    it("defaults: priority 0, due now, 3 runs, no key, no lease", async () => {
      const id = await reg.submit("k", { a: 1 });
      const record = await reg.inspect(id);
      expect(record).toMatchObject({
        priority: 0,
        runAt: T0,
        runs: 0,
        maxAttempts: 3,
        lease: null,
        lastError: null,
        cancelRequested: false,
        idempotencyKey: null,
        createdAt: T0,
      });
      expect(record.task).toEqual({
        id,
        kind: "k",
        status: "pending",
        input: { a: 1 },
        checkpoint: null,
        attempts: 0,
      });
    });

    it("stores priority, due time and max attempts", async () => {
      const a = await reg.submit("k", null, { priority: -7, delayMs: 250, maxAttempts: 9 });
      const b = await reg.submit("k", null, { runAt: new Date(T0 + 4000) });
      const c = await reg.submit("k", null, { runAt: T0 - 4000, idempotencyKey: "c" });
      expect(await reg.inspect(a)).toMatchObject({ priority: -7, runAt: T0 + 250, maxAttempts: 9 });
      expect((await reg.inspect(b)).runAt).toBe(T0 + 4000);
      expect(await reg.inspect(c)).toMatchObject({ runAt: T0 - 4000, idempotencyKey: "c" });
    });

    it("with an idempotency key: a second submit returns the first id and writes nothing", async () => {
      const events = recordEvents();
      const first = await reg.submit("email", { to: "a" }, { idempotencyKey: "order-42" });
      const raw = await backend.get(first);
      advance(100);
      const second = await reg.submit("email", { to: "b" }, { idempotencyKey: "order-42" });
      const otherKind = await reg.submit("sms", { to: "c" }, { idempotencyKey: "order-42" });
      expect(second).toBe(first);
      expect(otherKind).toBe(first);
      expect(await backend.list("")).toEqual([first]);
      expect(await backend.get(first)).toBe(raw);
      expect((await reg.inspect(first)).task.input).toEqual({ to: "a" });
      expect(events).toEqual([{ name: "submitted", event: { id: first, kind: "email" } }]);
      const other = await reg.submit("email", null, { idempotencyKey: "order-43" });
      expect(other).not.toBe(first);
    });

    it("a key stays taken after its task finished", async () => {
      const id = await reg.submit("k", null, { idempotencyKey: "once" });
      const claimed = await claimOne();
      await reg.complete(id, claimed.lease.token);
      expect(await reg.submit("k", null, { idempotencyKey: "once" })).toBe(id);
      expect(await reg.claim("", { owner: "w" })).toBeNull();
    });

    it.each([
      [{ priority: 1.5 }, "$.options.priority"],
      [{ priority: 2_000_000 }, "$.options.priority"],
      [{ delayMs: -1 }, "$.options.delayMs"],
      [{ runAt: -1 }, "$.options.runAt"],
      [{ runAt: "tomorrow" }, "$.options.runAt"],
      [{ runAt: new Date(Number.NaN) }, "$.options.runAt"],
      [{ maxAttempts: 0 }, "$.options.maxAttempts"],
      [{ idempotencyKey: "" }, "$.options.idempotencyKey"],
      [{ unknownOption: true }, "$.options"],
    ])("rejects bad options %o at %s and writes nothing", async (options, path) => {
      const events = recordEvents();
      const error = await rejection(reg.submit("k", null, options as SubmitOptions));
      expect(error.code).toBe("VALIDATION");
      expect(error.path).toBe(path);
      expect(await backend.list("")).toEqual([]);
      expect(events).toEqual([]);
    });

    it("submitMany writes every task, in order", async () => {
      const ids = await reg.submitMany([
        { kind: "a", input: 1 },
        { kind: "b", input: 2, options: { priority: 3 } },
        { kind: "a", input: 3, options: { delayMs: 10 } },
      ]);
      expect(ids).toHaveLength(3);
      expect(new Set(ids).size).toBe(3);
      expect(await backend.list("")).toEqual(ids);
      expect((await reg.pending("")).map((t) => t.input)).toEqual([1, 2, 3]);
      expect((await reg.inspect(ids[1] as TaskId)).priority).toBe(3);
      expect((await reg.inspect(ids[2] as TaskId)).runAt).toBe(T0 + 10);
    });

    it("submitMany writes nothing when any task is invalid", async () => {
      const events = recordEvents();
      const error = await rejection(
        reg.submitMany([
          { kind: "a", input: 1 },
          { kind: "a", input: 2, options: { priority: 0.5 } },
          { kind: "a", input: 3 },
        ]),
      );
      expect(error.code).toBe("VALIDATION");
      expect(error.path).toBe("$[1].options.priority");
      const badKind = await rejection(
        reg.submitMany([
          { kind: "a", input: 1 },
          { kind: "", input: 2 },
        ]),
      );
      expect(badKind.path).toBe("$[1].kind");
      expect(await reg.pending("")).toEqual([]);
      expect(await backend.list("")).toEqual([]);
      expect(events).toEqual([]);
    });

    it("submitMany returns the same id for a key repeated in the batch or already stored", async () => {
      const stored = await reg.submit("k", "stored", { idempotencyKey: "old" });
      const events = recordEvents();
      const ids = await reg.submitMany([
        { kind: "k", input: 1, options: { idempotencyKey: "new" } },
        { kind: "k", input: 2, options: { idempotencyKey: "new" } },
        { kind: "j", input: 3, options: { idempotencyKey: "old" } },
        { kind: "k", input: 4 },
      ]);
      expect(ids[1]).toBe(ids[0]);
      expect(ids[2]).toBe(stored);
      expect(ids[3]).not.toBe(ids[0]);
      expect(await backend.list("")).toEqual([stored, ids[0], ids[3]]);
      expect((await reg.get(ids[0] as TaskId)).input).toBe(1);
      expect(events.map((e) => e.event.id)).toEqual([ids[0], ids[3]]);
    });
  });

  // ── steps ──────────────────────────────────────────────────────────────────────────

  describe("recordStep", () => {
    it("append steps in ordinal order, in the exact wire format", async () => {
      const id = await reg.submit("agent", { q: "why" });
      const claimed = await claimOne();
      const { token } = claimed.lease;
      const s0 = makeStep("fetch", 0, { body: "data" }, T0);
      const s1: Step = {
        ...makeStep("draft", 1, 2.5, T0 + 1),
        confidence: 0.75,
        content_hash: 6267760168161781001n,
        events: [{ tokens: 12 }],
        metadata: { model: "m" },
      };
      const s2 = makeStep("send", 2, null, T0 + 2);
      await reg.recordStep(id, token, 0, s0);
      await reg.recordStep(id, token, 1, s1);
      await reg.recordStep(id, token, 2, s2);
      const head = claimed.task.checkpoint as Crux;
      const expected: Task = {
        id,
        kind: "agent",
        status: "running",
        input: { q: "why" },
        checkpoint: { ...head, steps: [s0, s1, s2] },
        attempts: 0,
      };
      const raw = await backend.get(id);
      expect(raw).toBe(encodeTask(expected));
      expect(raw).toContain('"confidence":0.75');
      expect(raw).toContain('"content_hash":6267760168161781001');
      expect(raw).toContain(`"input_hash":${identityHash("fetch", 0)}`);
      expect((await reg.get(id)).checkpoint?.steps).toEqual([s0, s1, s2]);
      expect(encodeTask(await reg.get(id))).toBe(raw);
    });

    it("keep ordinals contiguous, also across a rewrite of the document", async () => {
      const id = await reg.submit("agent", null);
      let { token } = (await claimOne()).lease;
      const gap = await rejection(reg.recordStep(id, token, 1, makeStep("b", 1, "b", T0)));
      expect(gap.code).toBe("VALIDATION");
      expect(gap.path).toBe("$.ordinal");
      await reg.recordStep(id, token, 0, makeStep("a", 0, "a", T0));
      await reg.recordStep(id, token, 1, makeStep("b", 1, "b", T0));
      expect((await reg.get(id)).checkpoint?.steps.map((s) => s.output)).toEqual(["a", "b"]);
      await reg.release(id, token); // rewrites the document with the steps so far
      ({ token } = (await claimOne()).lease);
      await reg.recordStep(id, token, 2, makeStep("c", 2, "c", T0));
      await reg.recordStep(id, token, 3, makeStep("d", 3, "d", T0));
      expect((await reg.get(id)).checkpoint?.steps.map((s) => s.output)).toEqual([
        "a",
        "b",
        "c",
        "d",
      ]);
    });

    it("with a stale token is LEASE_LOST and appends nothing", async () => {
      const id = await reg.submit("agent", null);
      const { token } = (await claimOne()).lease;
      await reg.recordStep(id, token, 0, makeStep("a", 0, "a", T0));
      const before = await snapshot(id);
      const events = recordEvents();
      await expectCode(
        reg.recordStep(id, randomUUID(), 1, makeStep("b", 1, "b", T0)),
        "LEASE_LOST",
      );
      await expectCode(
        reg.recordStep(id, randomUUID(), 0, makeStep("a", 0, "x", T0)),
        "LEASE_LOST",
      );
      expect(await snapshot(id)).toEqual(before);
      expect(events).toEqual([]);
    });

    it("of a task that is not running is LEASE_LOST", async () => {
      const id = await reg.submit("agent", null);
      await expectCode(reg.recordStep(id, randomUUID(), 0, makeStep("a", 0, 1, T0)), "LEASE_LOST");
      expect(await reg.get(id)).toMatchObject({ status: "pending", checkpoint: null });
    });

    it("keep the steps after complete, release and a later run", async () => {
      const id = await reg.submit("agent", null);
      let { token } = (await claimOne()).lease;
      await reg.recordStep(id, token, 0, makeStep("a", 0, "a", T0));
      await reg.release(id, token);
      ({ token } = (await claimOne()).lease);
      expect((await reg.get(id)).checkpoint?.steps.map((s) => s.output)).toEqual(["a"]);
      await reg.recordStep(id, token, 1, makeStep("b", 1, "b", T0));
      await reg.complete(id, token, "done");
      const checkpoint = (await reg.get(id)).checkpoint as Crux;
      expect(checkpoint.steps.map((s) => s.output)).toEqual(["a", "b"]);
      expect(checkpoint.value).toEqual({ Ok: "done" });
    });

    it("records a step again at its ordinal, in the document or appended", async () => {
      const id = await reg.submit("agent", null);
      const { token } = (await claimOne()).lease;
      await reg.recordStep(id, token, 0, makeStep("a", 0, "a", T0));
      await reg.recordStep(id, token, 1, makeStep("b", 1, "b", T0));
      const replacement = makeStep("b", 1, "b2", T0 + 9);
      await reg.recordStep(id, token, 1, replacement);
      const steps = (await reg.get(id)).checkpoint?.steps;
      expect(steps?.map((s) => s.output)).toEqual(["a", "b2"]);
      expect(steps?.[1]).toEqual(replacement);
      await reg.recordStep(id, token, 2, makeStep("c", 2, "c", T0));
      expect((await reg.get(id)).checkpoint?.steps.map((s) => s.output)).toEqual(["a", "b2", "c"]);
    });

    it("an ordinal past the next one is VALIDATION and writes nothing", async () => {
      const id = await reg.submit("agent", null);
      const { token } = (await claimOne()).lease;
      await reg.recordStep(id, token, 0, makeStep("a", 0, "a", T0));
      await reg.recordStep(id, token, 1, makeStep("b", 1, "b", T0));
      const before = await snapshot(id);
      for (const ordinal of [4, -1, 0.5]) {
        const error = await rejection(reg.recordStep(id, token, ordinal, makeStep("x", 4, 1, T0)));
        expect(error.code, `ordinal ${ordinal}`).toBe("VALIDATION");
        expect(error.path, `ordinal ${ordinal}`).toBe("$.ordinal");
      }
      expect(await snapshot(id)).toEqual(before);
      expect((await reg.get(id)).checkpoint?.steps.map((s) => s.output)).toEqual(["a", "b"]);
    });

    it("a step recorded again at its ordinal ends the same with or without a rewrite between", async () => {
      // X: the step is still an appended row; Y: a release and a new claim folded it into the document.
      const x = await reg.submit("agent", "x");
      const y = await reg.submit("agent", "y");
      const outcome = async (id: TaskId, rewrite: boolean) => {
        let { token } = (await claimOne()).lease;
        await reg.recordStep(id, token, 0, makeStep("a", 0, "first", T0));
        if (rewrite) {
          await reg.release(id, token);
          ({ token } = (await claimOne()).lease);
        }
        await reg.recordStep(id, token, 0, makeStep("a", 0, "second", T0));
        return (await reg.get(id)).checkpoint?.steps.map((s) => s.output);
      };
      const withoutRewrite = await outcome(x, false);
      const withRewrite = await outcome(y, true);
      expect(withRewrite).toEqual(withoutRewrite);
      expect(withRewrite).toEqual(["second"]);
    });

    it("reject an invalid step or ordinal with VALIDATION", async () => {
      const id = await reg.submit("agent", null);
      const { token } = (await claimOne()).lease;
      const step = makeStep("a", 0, "a", T0);
      expect((await rejection(reg.recordStep(id, token, -1, step))).path).toBe("$.ordinal");
      const bad = { ...step, status: "great" } as unknown as Step;
      expect((await rejection(reg.recordStep(id, token, 0, bad))).path).toBe("$.step.status");
      expect((await reg.get(id)).checkpoint?.steps).toEqual([]);
    });
  });

  // ── events ─────────────────────────────────────────────────────────────────────────

  describe("events", () => {
    it("each transition emits its event once, with its payload", async () => {
      const events = recordEvents();
      const id = await reg.submit("job", null, { maxAttempts: 2 });
      let claimed = await claimOne("", "worker-a");
      await reg.recordStep(id, claimed.lease.token, 0, makeStep("fetch", 0, 1, T0));
      await reg.recordStep(id, claimed.lease.token, 0, makeStep("fetch", 0, 2, T0));
      const retryAt = (await reg.fail(id, claimed.lease.token, "flaky")).runAt;
      clock.now = retryAt;
      claimed = await claimOne("", "worker-b");
      await reg.complete(id, claimed.lease.token, "ok");
      const flaky: CruxErr = { kind: "step_failed", step: "", message: "flaky" };
      expect(events).toEqual([
        { name: "submitted", event: { id, kind: "job" } },
        { name: "claimed", event: { id, kind: "job", owner: "worker-a", runs: 1 } },
        { name: "step", event: { id, name: "fetch", ordinal: 0, replayed: false } },
        { name: "step", event: { id, name: "fetch", ordinal: 0, replayed: false } },
        { name: "retried", event: { id, kind: "job", runAt: retryAt, error: flaky } },
        { name: "claimed", event: { id, kind: "job", owner: "worker-b", runs: 2 } },
        { name: "completed", event: { id, kind: "job" } },
      ]);
    });

    it("failed, retried, reclaimed and cancelled", async () => {
      const last = await reg.submit("job", 1, { maxAttempts: 1 });
      const lost = await reg.submit("job", 2);
      const dead = await reg.submit("job", 3, { maxAttempts: 1 });
      const waiting = await reg.submit("other", 4);
      const busy = await reg.submit("job", 5);
      const events = recordEvents();
      const lastClaim = await claimOne("job", "worker-a", 1000);
      await claimOne("job", "worker-a", 1000);
      advance(1); // dead's lease expires after lost's: the sweep order is fixed
      await claimOne("job", "worker-b", 1000);
      const busyClaim = await claimOne("job", "worker-c", 60_000);
      events.length = 0;

      const denied: CruxErr = { kind: "denied", step: "s", reason: "no" };
      await reg.fail(last, lastClaim.lease.token, denied);
      advance(1001);
      await reg.retry(last);
      await reg.recover();
      await reg.cancel(waiting, "drop");
      await reg.cancel(busy, "stop");
      await reg.fail(busy, busyClaim.lease.token, "stopped");
      const deadError = (await reg.inspect(dead)).lastError as CruxErr;
      expect(events).toEqual([
        { name: "failed", event: { id: last, kind: "job", error: denied } },
        { name: "retried", event: { id: last, kind: "job", runAt: T0 + 1002, error: null } },
        {
          name: "reclaimed",
          event: { id: lost, kind: "job", previousOwner: "worker-a", status: "pending" },
        },
        {
          name: "reclaimed",
          event: { id: dead, kind: "job", previousOwner: "worker-b", status: "failed" },
        },
        { name: "cancelled", event: { id: waiting, kind: "other", wasRunning: false } },
        { name: "cancelled", event: { id: busy, kind: "job", wasRunning: true } },
        {
          name: "failed",
          event: {
            id: busy,
            kind: "job",
            error: { kind: "step_failed", step: "", message: "stopped" },
          },
        },
      ]);
      expect(deadError.kind).toBe("step_failed");
    });

    it("refused calls emit nothing", async () => {
      const id = await reg.submit("job", null);
      const claimed = await claimOne();
      await reg.complete(id, claimed.lease.token);
      const events = recordEvents();
      await expectCode(reg.complete(id, claimed.lease.token), "LEASE_LOST");
      await expectCode(reg.fail(id, claimed.lease.token, "x"), "LEASE_LOST");
      await expectCode(reg.retry(id), "INVALID_STATE");
      expect(await reg.cancel(id)).toBe(false);
      expect(await reg.claim("", { owner: "w" })).toBeNull();
      expect(await reg.recover()).toEqual([]);
      expect(events).toEqual([]);
    });

    it("an unsubscribed listener hears nothing more", async () => {
      const heard: TaskId[] = [];
      const off = reg.on("submitted", (e) => {
        heard.push(e.id);
      });
      const first = await reg.submit("k", null);
      off();
      await reg.submit("k", null);
      expect(heard).toEqual([first]);
    });

    it("a listener that throws does not undo or block the transition", async () => {
      const boom = new Error("listener failed");
      reg.on("submitted", () => {
        throw boom;
      });
      reg.on("completed", () => {
        throw boom;
      });
      const completed: TaskId[] = [];
      reg.on("completed", (e) => {
        completed.push(e.id);
      });
      // The emitter rethrows a listener's error on a microtask; catch it there, not as an
      // uncaught exception of the test run.
      const rethrown: unknown[] = [];
      const original = globalThis.queueMicrotask;
      vi.spyOn(globalThis, "queueMicrotask").mockImplementation((callback) => {
        original.call(globalThis, () => {
          try {
            callback();
          } catch (error) {
            rethrown.push(error);
          }
        });
      });
      const id = await reg.submit("k", null);
      const claimed = await claimOne();
      await reg.complete(id, claimed.lease.token, 1);
      await new Promise((resolve) => setImmediate(resolve));
      vi.restoreAllMocks();

      expect((await reg.get(id)).status).toBe("done");
      expect(completed).toEqual([id]);
      expect(rethrown).toEqual([boom, boom]);
    });
  });
});
