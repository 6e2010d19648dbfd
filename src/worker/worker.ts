/**
 * A worker loop: claim due tasks of some kinds, run the handler with durable steps, keep the
 * lease alive with heartbeats, and complete or fail the run. Idle, it sleeps (idle.ts) until
 * there may be something to do — never a hot loop.
 */
import { hostname } from "node:os";
import { checkLeaseMs, checkLeaseOwner, integerAtLeast, optionsObject } from "../arguments.js";
import { hasErrorCode, ValidationError } from "../errors.js";
import { CruxFailure } from "../failure.js";
import type { ClaimedTask } from "../record.js";
import type { KindFilter } from "../task-state.js";
import { checkTimerMs } from "../timers.js";
import { Wakeup } from "../wakeup.js";
import type { Json } from "../wire/json.js";
import type { Task } from "../wire/schema.js";
import { failsForGood, finalFailure, WorkContext } from "./context.js";
import { Heartbeats } from "./heartbeats.js";
import type { WorkerHost } from "./host.js";
import { IdleWait } from "./idle.js";
import { LazyAbortController } from "./lazy-abort.js";
import { REPLAY_MODES, type ReplayMode } from "./replay.js";
import { asError } from "./thrown.js";

export type WorkHandler<I = Json> = (task: Task, ctx: WorkContext<I>) => unknown;

/** Every duration here is in ms, at most 2^31−1 (what Node's timers can wait). */
export interface WorkOptions {
  /** Tasks run at once. Default 1. */
  readonly concurrency?: number;
  /** Lease length. Default 30 s; at least 100 ms. */
  readonly leaseMs?: number;
  /** Heartbeat period. Default a third of the lease. */
  readonly heartbeatMs?: number;
  /** Longest idle sleep: expired leases are swept at least this often. Default 1 s. */
  readonly pollIntervalMs?: number;
  /**
   * How often an idle worker checks whether another process committed, besides the backend's
   * watch (SQLite watches its WAL file). Default 5 ms. Unused on a backend without a change
   * feed (memory), which no other process can change.
   */
  readonly changePollMs?: number;
  /** Lease owner name. Default `host:pid:random`. */
  readonly owner?: string;
  /** Aborting it stops the worker, as `stop()` does. */
  readonly signal?: AbortSignal;
  /** How a resumed run matches its checkpoint. Default strict. */
  readonly replay?: ReplayMode;
  /** Errors of the loop itself (a storage failure while claiming, say). Default: console.error. */
  readonly onError?: (error: unknown) => void;
}

export interface StopOptions {
  /**
   * How long in-flight handlers may take to finish before their leases are released.
   * Default 10 s; at most 2^31−1 ms.
   */
  readonly timeoutMs?: number;
}

/** The stop timeout asked for: 10 s by default. */
export function stopTimeoutMs(options: StopOptions | undefined): number {
  const { timeoutMs } = optionsObject(options, ["timeoutMs"]);
  return timeoutMs === undefined ? 10_000 : checkTimerMs(timeoutMs, 0, "$.timeoutMs");
}

interface Run {
  readonly claimed: ClaimedTask;
  readonly controller: LazyAbortController;
  /** Given back by stop(): the handler's outcome no longer matters. */
  released: boolean;
  done: Promise<void>;
}

export class Worker {
  readonly owner: string;
  readonly #host: WorkerHost;
  readonly #kinds: KindFilter;
  readonly #handler: WorkHandler<never>;
  /** Told once the worker has stopped. */
  readonly #whenStopped: () => void;
  readonly #concurrency: number;
  readonly #leaseMs: number;
  readonly #pollIntervalMs: number;
  readonly #replay: ReplayMode;
  readonly #onError: (error: unknown) => void;
  readonly #runs = new Map<string, Run>();
  readonly #heartbeats: Heartbeats<Run>;
  /** Wakes the loop when a run ends or stop() is called. */
  readonly #local = new Wakeup();
  readonly #idle: IdleWait;
  #stopping = false;
  readonly #loop: Promise<void>;
  readonly #unsubscribe: () => void;
  #stopped: Promise<void> | undefined;

  /** Made by TaskRegistry.work(), which gives it the registry's host side. */
  constructor(
    host: WorkerHost,
    kinds: KindFilter,
    handler: WorkHandler<never>,
    given: WorkOptions,
    whenStopped: () => void,
  ) {
    const options = optionsObject(given, [
      "concurrency",
      "leaseMs",
      "heartbeatMs",
      "pollIntervalMs",
      "changePollMs",
      "owner",
      "signal",
      "replay",
      "onError",
    ]);
    this.#host = host;
    this.#kinds = kinds;
    this.#handler = handler;
    this.#whenStopped = whenStopped;
    const option = (value: number | undefined, fallback: number, min: number, name: string) =>
      value === undefined ? fallback : integerAtLeast(value, min, `$.${name}`);
    const timer = (value: number | undefined, fallback: number, name: string) =>
      value === undefined ? fallback : checkTimerMs(value, 1, `$.${name}`);
    this.#concurrency = option(options.concurrency, 1, 1, "concurrency");
    this.#leaseMs = checkLeaseMs(options.leaseMs);
    const heartbeatMs = timer(
      options.heartbeatMs,
      Math.max(1, Math.floor(this.#leaseMs / 3)),
      "heartbeatMs",
    );
    this.#pollIntervalMs = timer(options.pollIntervalMs, 1000, "pollIntervalMs");
    const changePollMs = timer(options.changePollMs, 5, "changePollMs");
    this.#replay = options.replay ?? "strict";
    if (!REPLAY_MODES.includes(this.#replay)) {
      throw new ValidationError("$.replay", `expected one of ${REPLAY_MODES.join(", ")}`);
    }
    this.owner =
      options.owner === undefined
        ? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`
        : checkLeaseOwner(options.owner);
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new ValidationError("$.signal", "expected an AbortSignal");
    }
    if (options.onError !== undefined && typeof options.onError !== "function") {
      throw new ValidationError("$.onError", "expected a function");
    }
    this.#onError = options.onError ?? ((error) => console.error("cruxx-registry worker:", error));
    options.signal?.addEventListener("abort", () => void this.stop(), { once: true });
    // cancel() in this process reaches the run at once; from another process, at the run's
    // next step write or heartbeat.
    this.#unsubscribe = host.events.on("cancelled", ({ id, wasRunning }) => {
      const run = this.#runs.get(id);
      if (run !== undefined && wasRunning) cancelRun(run);
    });
    this.#heartbeats = new Heartbeats(heartbeatMs, (run) => void this.#heartbeat(run));
    this.#idle = new IdleWait(
      host,
      kinds,
      { pollIntervalMs: this.#pollIntervalMs, changePollMs },
      this.#local,
    );
    this.#loop = this.#run();
  }

  /** Tasks being handled right now. */
  get inFlight(): number {
    return this.#runs.size;
  }

  /**
   * Stop claiming, let in-flight handlers finish for up to `timeoutMs`, then abort the rest
   * and release their leases so another worker takes them at once. Idempotent: a second call
   * waits for the first, whose timeout holds.
   */
  async stop(options: StopOptions = {}): Promise<void> {
    const timeoutMs = stopTimeoutMs(options);
    this.#stopped ??= this.#shutdown(timeoutMs);
    return this.#stopped;
  }

  async #shutdown(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    this.#local.notify();
    await this.#loop;
    const runs = [...this.#runs.values()];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.allSettled(runs.map((run) => run.done)), timeout]);
    clearTimeout(timer);
    await Promise.all(
      [...this.#runs.values()].map(async (run) => {
        run.released = true;
        // A handler that ignores its signal may never return: its heartbeat must not keep
        // the process alive.
        this.#heartbeats.stop(run);
        run.controller.abort(new CruxFailure({ kind: "cancelled", reason: "the worker stopped" }));
        await this.#host.release(run.claimed.task.id, run.claimed.lease.token).catch((error) => {
          // A closed backend was reported once (#stopIfClosed); the lease expires by itself.
          if (!hasErrorCode(error, "LEASE_LOST") && !hasErrorCode(error, "CLOSED")) {
            this.#onError(error);
          }
        });
      }),
    );
    this.#unsubscribe(); // only now: a run draining above can still be cancelled at once
    this.#whenStopped();
  }

  /**
   * Whether `error` says the backend was closed under the worker (closed directly, not by
   * the registry's close(), which stops its workers first). Nothing can be written any more:
   * the worker reports it once and stops at once, instead of retrying forever.
   */
  #stopIfClosed(error: unknown): boolean {
    if (!hasErrorCode(error, "CLOSED")) return false;
    if (this.#stopped === undefined) {
      this.#onError(error);
      void this.stop({ timeoutMs: 0 });
    }
    return true;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      try {
        const look = await this.#idle.look();
        await this.#host.recover(this.#kinds);
        while (!this.#stopping && this.#runs.size < this.#concurrency) {
          // Every free slot in one transaction.
          const claimed = await this.#host.claim(
            this.#kinds,
            this.owner,
            this.#leaseMs,
            this.#concurrency - this.#runs.size,
          );
          if (claimed.length === 0) break;
          for (const task of claimed) this.#start(task);
        }
        if (this.#stopping) break;
        await this.#idle.sleep(look, this.#runs.size >= this.#concurrency);
        failures = 0;
      } catch (error) {
        if (this.#stopIfClosed(error)) break;
        this.#onError(error);
        failures++;
        // stop() notifies #local, which ends this wait too.
        await this.#local.wait(Math.min(this.#pollIntervalMs, 10 * 2 ** failures));
      }
    }
  }

  #start(claimed: ClaimedTask): void {
    const run: Run = {
      claimed,
      controller: new LazyAbortController(),
      released: false,
      done: Promise.resolve(),
    };
    this.#runs.set(claimed.task.id, run);
    this.#heartbeats.start(run);
    run.done = this.#execute(run).finally(() => {
      this.#runs.delete(claimed.task.id);
      this.#local.notify();
    });
  }

  async #execute(run: Run): Promise<void> {
    const { claimed, controller } = run;
    const { id } = claimed.task;
    const { token } = claimed.lease;
    const ctx = new WorkContext(
      this.#host,
      claimed,
      { abort: controller, cancel: () => cancelRun(run) },
      this.#replay,
    );
    try {
      const value = await this.#handler(claimed.task, ctx as WorkContext<never>);
      if (run.released) return;
      await ctx.flush();
      await this.#host.complete(id, token, value ?? null).catch((error: unknown) => {
        if (hasErrorCode(error, "VALIDATION")) {
          const message = `the handler's result cannot be stored: ${error.message}`;
          failsForGood(error, { kind: "step_failed", step: "", message });
        }
        throw error;
      });
    } catch (thrown) {
      // First of all: any other look at a thrown value (a Proxy, say) could throw again.
      const error = asError(thrown, "the handler");
      if (run.released || leaseLostOn(error, id)) return; // the task is someone else's now
      const final = finalFailure(error);
      const reason = controller.aborted ? controller.reason : (final ?? error);
      try {
        await ctx.flush();
        await this.#host.fail(id, token, reason, final !== undefined);
      } catch (failError) {
        if (!hasErrorCode(failError, "LEASE_LOST") && !this.#stopIfClosed(failError)) {
          this.#onError(failError);
        }
      }
    } finally {
      this.#heartbeats.stop(run);
    }
  }

  async #heartbeat(run: Run): Promise<void> {
    if (run.controller.aborted) return;
    const { id } = run.claimed.task;
    try {
      const { cancelRequested } = await this.#host.heartbeat(
        id,
        run.claimed.lease.token,
        this.#leaseMs,
      );
      if (cancelRequested) cancelRun(run);
    } catch (error) {
      if (hasErrorCode(error, "LEASE_LOST")) run.controller.abort(error);
      else if (!this.#stopIfClosed(error)) this.#onError(error);
    }
  }
}

/**
 * Whether `error` says this run's own lease on task `id` is gone: a LEASE_LOST about another
 * task (one the handler itself claimed, say) is the handler's failure like any other error.
 * Read as a data property: a getter of the handler's error must not run here.
 */
function leaseLostOn(error: Error, id: string): boolean {
  return (
    hasErrorCode(error, "LEASE_LOST") &&
    Object.getOwnPropertyDescriptor(error, "taskId")?.value === id
  );
}

/** Abort a run because cancel() was called; the reason given to cancel() ends up in its error. */
function cancelRun(run: Run): void {
  run.controller.abort(new CruxFailure({ kind: "cancelled", reason: "cancel() was called" }));
}
