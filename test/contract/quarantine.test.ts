/**
 * A row that does not decode costs only itself, on every backend: claim, claimMany, pending,
 * the sweep (recover) and a worker skip it and keep serving every other task; it is
 * quarantined — out of every queue path, its bytes unchanged — and reported once; get and
 * inspect name it in a SERIALIZATION error; repair() (or the port's put/cas) releases it.
 * Rows are damaged through the port (put of an undecodable document, or a change storing an
 * undecodable last error), so the same tests hold for every adapter.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import type { RegistryEvents } from "../../src/events.js";
import type { TaskId } from "../../src/ids.js";
import { TaskRegistry } from "../../src/registry.js";
import { identityHash } from "../../src/wire/hash.js";
import { BACKENDS } from "../support/backends.js";
import { stepRecord } from "../support/crux.js";
import { drain } from "../support/drain.js";
import { expectCode, rejection } from "../support/rejection.js";

const T0 = Date.UTC(2030, 0, 1);

/** Documents a disk, a hand edit or an older bug could leave behind. */
const DAMAGE: readonly ((data: string) => string)[] = [
  () => "not json at all",
  (data) => data.slice(0, 40),
  (data) => data.replace(/"status":"(\w+)"/, '"status":"PENDING"'),
  (data) => data.replace(/"attempts":\d+/, '"attempts":-1'),
];

describe.each(BACKENDS)("a row that does not decode, on $name", (factory) => {
  const clock = { now: T0 };
  let backend: RegistryBackend;
  let reg: TaskRegistry;
  let quarantined: RegistryEvents["quarantined"][];

  beforeEach(async () => {
    clock.now = T0;
    backend = await factory.open();
    reg = new TaskRegistry(backend, { clock: () => clock.now });
    quarantined = [];
    reg.on("quarantined", (event) => quarantined.push(event));
  });
  afterEach(async () => {
    await reg.close();
  });

  /** Replace the task's document through the port; returns the bytes now stored. */
  const damage = async (id: TaskId, how = 0): Promise<string> => {
    const state = await backend.read(id);
    if (state === undefined) throw new Error(`no task ${id}`);
    const data = (DAMAGE[how % DAMAGE.length] as (data: string) => string)(state.data);
    await backend.put(id, { kind: state.kind, status: state.status, data }, Date.now());
    expect(await backend.get(id)).toBe(data);
    return data;
  };

  /** Store a last error that is not a CruxErr, through the port. */
  const damageLastError = (id: TaskId) =>
    backend.update(id, (s) => ({ ...s, lastError: '{"kind":"bogus"' }));

  const submitAll = (n: number, kind = "k") =>
    Promise.all(Array.from({ length: n }, (_, i) => reg.submit(kind, i)));

  it("claim skips it, quarantines it once and takes the next best task instead", async () => {
    const bad = await reg.submit("k", "bad", { priority: 5 });
    const [first, second] = await submitAll(2);
    const bytes = await damage(bad);

    expect((await reg.claim("k", { owner: "w" }))?.task.id).toBe(first);
    expect((await reg.claim("", { owner: "w" }))?.task.id).toBe(second);
    expect(await reg.claim(["k", "other"], { owner: "w" })).toBeNull();

    expect(quarantined).toEqual([
      { id: bad, kind: "k", status: "pending", reason: expect.stringContaining(bad) },
    ]);
    expect(await reg.quarantined()).toEqual([{ ...quarantined[0], quarantinedAt: T0 }]);
    expect(await backend.get(bad)).toBe(bytes);
  });

  it("claimMany fills its limit past several that do not decode", async () => {
    const ids = await submitAll(7);
    const bad = [ids[0], ids[2], ids[3]] as TaskId[];
    for (const [i, id] of bad.entries()) await damage(id, i);

    const claimed = await reg.claimMany("k", { owner: "w", limit: 3 });
    expect(claimed.map((c) => c.task.id)).toEqual([ids[1], ids[4], ids[5]]);
    expect(quarantined.map((e) => e.id)).toEqual(bad);
    expect((await reg.claimMany("k", { owner: "w", limit: 3 })).map((c) => c.task.id)).toEqual([
      ids[6],
    ]);
    expect(quarantined).toHaveLength(3);
  });

  it("pending() skips and quarantines it, and still returns up to limit good tasks", async () => {
    const ids = await submitAll(5);
    await damage(ids[0] as TaskId, 1);
    await damage(ids[1] as TaskId, 2);

    const ofKind = await reg.pending("k", { limit: 2 });
    expect(ofKind.map((t) => t.id)).toEqual(ids.slice(2, 4));
    expect(quarantined.map((e) => e.id)).toEqual(ids.slice(0, 2));
    expect((await reg.pending("")).map((t) => t.id)).toEqual(ids.slice(2));
    expect((await reg.pending("k", { limit: 1 })).map((t) => t.id)).toEqual(ids.slice(2, 3));
    expect(quarantined).toHaveLength(2);
    expect((await reg.quarantined({ kinds: "k", limit: 5 })).map((q) => q.id)).toEqual(
      ids.slice(0, 2),
    );
    expect(await reg.quarantined({ kinds: ["other"] })).toEqual([]);
    expect((await reg.quarantined({ limit: 1 })).map((q) => q.id)).toEqual(ids.slice(0, 1));
  });

  it("recover quarantines running tasks that do not decode and takes back the rest", async () => {
    // Expired leases, and live ones of an owner that says it is dead.
    const ids = await submitAll(4);
    await reg.claimMany("k", { owner: "gone", leaseMs: 1000, limit: 2 });
    await reg.claimMany("k", { owner: "restarted", leaseMs: 60_000, limit: 2 });
    const expiredBytes = await damage(ids[0] as TaskId);
    const ownedBytes = await damage(ids[2] as TaskId, 1);
    clock.now += 1000;

    const recovered = await reg.recover("k", { owner: "restarted" });
    expect(recovered.map((r) => r.task.id).sort()).toEqual([ids[1], ids[3]].sort());
    expect(quarantined.map((e) => [e.id, e.status]).sort()).toEqual(
      [
        [ids[0], "running"],
        [ids[2], "running"],
      ].sort(),
    );
    expect(await backend.get(ids[0] as TaskId)).toBe(expiredBytes);
    expect(await backend.get(ids[2] as TaskId)).toBe(ownedBytes);
    // Out of the sweep for good: no second event, no error.
    clock.now += 60_000;
    expect(await reg.recover()).toEqual([]);
    expect(quarantined).toHaveLength(2);
  });

  it("the port reads a quarantined task in the status it had, and put continues from it", async () => {
    const [id] = (await submitAll(1)) as TaskId[];
    await reg.claim("k", { owner: "gone", leaseMs: 1000 });
    await reg.cancel(id as TaskId, "stop");
    const good = (await backend.get(id as TaskId)) as string;
    await damage(id as TaskId);
    clock.now += 1000;
    await reg.recover("k");
    expect(quarantined.map((e) => e.status)).toEqual(["running"]);
    expect(await backend.read(id as TaskId)).toMatchObject({
      status: "running",
      cancelRequested: true,
    });
    // The same run goes on: its cancel request stays (see overwriteDocument).
    await backend.put(id as TaskId, { kind: "k", status: "running", data: good }, clock.now);
    expect(await backend.read(id as TaskId)).toMatchObject({
      status: "running",
      cancelRequested: true,
    });
  });

  it("a last error that does not decode quarantines the task as well", async () => {
    const [retried, next, cancelled] = await submitAll(3);
    await damageLastError(retried as TaskId);
    expect((await reg.claim("k", { owner: "w" }))?.task.id).toBe(next);
    expect(quarantined).toEqual([
      {
        id: retried,
        kind: "k",
        status: "pending",
        reason: expect.stringMatching(/\$\.lastError/),
      },
    ]);

    // A running task asked to cancel, whose stored reason is damaged, when its lease expires.
    const running = await reg.claim("k", { owner: "w", leaseMs: 1000 });
    expect(running?.task.id).toBe(cancelled);
    await reg.cancel(cancelled as TaskId, "stop");
    await damageLastError(cancelled as TaskId);
    // Its holder giving it back needs the stored reason: SERIALIZATION, not a raw JSON error.
    const refused = await rejection(
      reg.release(cancelled as TaskId, running?.lease.token as string),
    );
    expect(refused).toMatchObject({
      code: "SERIALIZATION",
      message: expect.stringContaining(cancelled as TaskId),
    });
    clock.now += 1000;
    expect(await reg.recover()).toEqual([]);
    expect(quarantined.map((e) => e.id)).toEqual([retried, cancelled]);
    await expectCode(reg.inspect(cancelled as TaskId), "SERIALIZATION");
  });

  it("get and inspect give SERIALIZATION naming the task; nextWakeAt no longer counts it", async () => {
    const id = await reg.submit("k", null, { delayMs: 5000 });
    expect(await reg.nextWakeAt("k", T0)).toBe(T0 + 5000);
    await damage(id);
    for (const read of [reg.get(id), reg.inspect(id), reg.loadCheckpoint(id)]) {
      const error = await rejection(read);
      expect(error.code).toBe("SERIALIZATION");
      expect(error.message).toContain(id);
    }
    expect(await reg.pending("k")).toEqual([]);
    expect(await reg.nextWakeAt("k", T0)).toBeUndefined();
  });

  it("a quarantined task refuses every change and keeps its bytes until repair()", async () => {
    const [id, other] = await submitAll(2);
    const claimed = await reg.claim("k", { owner: "w", leaseMs: 1000 });
    const token = claimed?.lease.token as string;
    const bytes = await damage(id as TaskId);
    clock.now += 1000;
    await reg.recover();
    expect(quarantined.map((e) => e.id)).toEqual([id]);

    for (const change of [
      reg.heartbeat(id as TaskId, token),
      reg.complete(id as TaskId, token, 1),
      reg.fail(id as TaskId, token, "no"),
      reg.release(id as TaskId, token),
      reg.cancel(id as TaskId),
      reg.retry(id as TaskId),
      reg.recordStep(id as TaskId, token, 0, stepRecord("s", identityHash("s", 0), 1)),
    ]) {
      const error = await rejection(change);
      expect(error.code).toBe("SERIALIZATION");
      expect(error.message).toContain(`task ${id} is quarantined`);
    }
    expect(await backend.get(id as TaskId)).toBe(bytes);
    expect((await reg.inspect(other as TaskId)).task.status).toBe("pending");

    // The operator writes it a document that decodes: it is pending again, and runs.
    await reg.repair(id as TaskId, {
      id: id as TaskId,
      kind: "k",
      status: "pending",
      input: "repaired",
      checkpoint: null,
      attempts: 0,
    });
    expect(await reg.quarantined()).toEqual([]);
    const record = await reg.inspect(id as TaskId);
    expect(record).toMatchObject({ lease: null, lastError: null, runs: 1 });
    const again = await reg.claimMany("k", { owner: "w", limit: 2 });
    expect(again.map((c) => c.task.id)).toEqual([id, other]);
    expect(again[0]?.task.input).toBe("repaired");
    await reg.complete(id as TaskId, again[0]?.lease.token as string, "ok");
    expect((await reg.get(id as TaskId)).status).toBe("done");
    expect(quarantined).toHaveLength(1);
  });

  it("repair() clears a last error that does not decode and validates its task", async () => {
    const id = await reg.submit("k", null, { maxAttempts: 1 });
    const claimed = await reg.claim("k", { owner: "w" });
    await reg.fail(id, claimed?.lease.token as string, "boom");
    await damageLastError(id);
    await expectCode(reg.inspect(id), "SERIALIZATION");
    const task = await reg.get(id); // the document itself still decodes

    const wrongId = await rejection(reg.repair(id, { ...task, id: await reg.submit("k", 1) }));
    expect(wrongId).toMatchObject({ code: "VALIDATION", path: "$.task.id" });
    await expectCode(reg.repair(id, { ...task, status: "bogus" as "done" }), "VALIDATION");
    const missing = `task_${"0".repeat(26)}` as TaskId;
    await expectCode(reg.repair(missing, { ...task, id: missing }), "NOT_FOUND");

    await reg.repair(id, task);
    expect(await reg.inspect(id)).toMatchObject({ task, lastError: null });
  });

  it("the port's put and cas give a quarantined task a new document and release it", async () => {
    const [viaPut, viaCas] = await submitAll(2);
    const good = new Map<TaskId, string>();
    for (const id of [viaPut, viaCas] as TaskId[]) {
      good.set(id, (await backend.get(id)) as string);
      await damage(id);
    }
    expect(await reg.pending("k")).toEqual([]);
    expect(quarantined).toHaveLength(2);

    await backend.put(
      viaPut as TaskId,
      {
        kind: "k",
        status: "pending",
        data: good.get(viaPut as TaskId) as string,
      },
      Date.now(),
    );
    const stored = (await backend.get(viaCas as TaskId)) as string;
    expect(
      await backend.cas(
        viaCas as TaskId,
        stored,
        {
          kind: "k",
          status: "pending",
          data: good.get(viaCas as TaskId) as string,
        },
        { now: Date.now() },
      ),
    ).toBe(true);
    expect(await reg.quarantined()).toEqual([]);
    expect((await reg.pending("k")).map((t) => t.id)).toEqual([viaPut, viaCas]);
  });

  it("a worker drains every other task of the kind", async () => {
    const ids = await submitAll(24);
    // Two running under leases that expire, of a worker that died; the rest pending.
    const dead = await reg.claimMany("k", { owner: "dead", leaseMs: 1000, limit: 2 });
    const bad = [dead[0]?.task.id, ids[5], ids[11], ids[17]] as TaskId[];
    for (const [i, id] of bad.entries()) await damage(id, i);
    await damageLastError(ids[20] as TaskId);
    bad.push(ids[20] as TaskId);
    clock.now += 1000;
    const good = ids.filter((id) => !bad.includes(id));

    const { completed, errors } = await drain(reg, "k", good.length);

    expect([...completed].sort()).toEqual([...good].sort());
    expect(errors).toEqual([]);
    expect(quarantined.map((e) => e.id).sort()).toEqual([...bad].sort());
    expect((await reg.quarantined()).map((q) => q.id).sort()).toEqual([...bad].sort());
  });
});
