/**
 * What a handler gets for one run: the input, an AbortSignal, and `step()`, which runs a
 * named piece of work once, persists its result before returning, and on a resumed run
 * answers from the checkpoint instead of running it again.
 */

import type { RegistryEventEmitter } from "../events.js";
import { CruxFailure } from "../failure.js";
import type { ClaimedTask, StepResult, TaskRegistry } from "../registry.js";
import { contentHash, identityHash } from "../wire/hash.js";
import { type Json, stringifyJson } from "../wire/json.js";
import type { Step } from "../wire/schema.js";
import { ReplayCache, type ReplayMode } from "./replay.js";

export interface StepOptions {
  /**
   * What the step works on; its hash is stored as `content_hash`, and lenient replay skips
   * cached steps whose key differs.
   */
  readonly key?: Json;
}

interface RunControl {
  /** Its signal is made when first read: most handlers never read it. */
  readonly abort: { readonly signal: AbortSignal };
  /** Stop the run: cancel() was called. */
  readonly cancel: () => void;
}

export class WorkContext<I = Json> {
  /** The task's input. */
  readonly input: I;
  /** The claimed task and its lease. */
  readonly claimed: ClaimedTask;

  readonly #registry: TaskRegistry;
  readonly #events: RegistryEventEmitter;
  readonly #replay: ReplayCache;
  readonly #cancel: () => void;
  readonly #abort: { readonly signal: AbortSignal };
  #ordinal = 0;
  /** Replayed steps, recorded again (attempt 0) with the next write rather than one by one. */
  #replayed: { ordinal: number; step: Step; replayed: true }[] = [];

  constructor(
    registry: TaskRegistry,
    events: RegistryEventEmitter,
    claimed: ClaimedTask,
    control: RunControl,
    mode: ReplayMode,
  ) {
    this.claimed = claimed;
    this.input = claimed.task.input as I;
    this.#abort = control.abort;
    this.#cancel = control.cancel;
    this.#registry = registry;
    this.#events = events;
    this.#replay = new ReplayCache(claimed.task.checkpoint?.steps ?? [], mode);
  }

  /** Aborts when the task is cancelled, the lease is lost, or the worker stops. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /**
   * Run `fn` as step `name`: live, persisted before this returns; or, on a resumed run,
   * replayed from the checkpoint without running (and recorded again with `attempt: 0`).
   * Its result must be JSON; `null` or `undefined` is stored as null, which a later replay
   * treats as not done.
   */
  async step<T>(
    name: string,
    fn: (signal: AbortSignal) => T | Promise<T>,
    options: StepOptions = {},
  ): Promise<T> {
    this.signal.throwIfAborted();
    const ordinal = this.#ordinal++;
    const inputHash = identityHash(name, ordinal);
    const keyHash = options.key === undefined ? null : contentHash(options.key);
    const cached = this.#replay.lookup(ordinal, name, inputHash, keyHash);
    if (cached !== undefined) {
      this.#replayed.push({
        ordinal,
        step: { ...cached, input_hash: inputHash, attempt: 0, duration_ms: 0 },
        replayed: true,
      });
      this.#events.emit("step", { id: this.claimed.task.id, name, ordinal, replayed: true });
      return cached.output as T;
    }
    const startedMs = Date.now();
    const base = {
      name,
      kind: "plain" as const,
      confidence: 1,
      started_at: new Date(startedMs).toISOString(),
      input_hash: inputHash,
      content_hash: keyHash,
      attempt: this.claimed.runs,
      events: [],
      metadata: {},
    };
    const record = (result: Pick<Step, "status" | "output" | "error">) =>
      this.#persist({
        ordinal,
        step: { ...base, ...result, duration_ms: Date.now() - startedMs },
      });
    let output: T;
    try {
      output = await fn(this.signal);
    } catch (error) {
      // A third-party error's message may hold a lone surrogate: repaired, it can be stored.
      const message = (error instanceof Error ? error.message : String(error)).toWellFormed();
      await record({ status: "err", output: null, error: message });
      if (error instanceof CruxFailure) throw error;
      throw new CruxFailure({ kind: "step_failed", step: name, message });
    }
    await record({ status: "ok", output: storable(name, output), error: null });
    return output;
  }

  /** Persist replayed steps not yet written; the worker calls it before ending the run. */
  async flush(): Promise<void> {
    if (this.#replayed.length > 0) await this.#persist();
  }

  async #persist(live?: { ordinal: number; step: Step }): Promise<void> {
    const entries = live === undefined ? this.#replayed : [...this.#replayed, live];
    const { id } = this.claimed.task;
    const result: StepResult = await this.#registry.recordSteps(
      id,
      this.claimed.lease.token,
      entries,
    );
    this.#replayed = [];
    if (result.cancelRequested) this.#cancel();
  }
}

/** The step's result as stored: JSON, or a step failure naming what is not. */
function storable(name: string, output: unknown): Json {
  if (output === undefined || output === null) return null;
  try {
    stringifyJson(output);
  } catch (error) {
    throw new CruxFailure({
      kind: "step_failed",
      step: name,
      message: `its result is not JSON: ${(error as Error).message}`,
    });
  }
  return output as Json;
}
