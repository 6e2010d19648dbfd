/**
 * What a handler gets for one run: the input, an AbortSignal, and `step()`, which runs a
 * named piece of work once, persists its result before returning, and on a resumed run
 * answers from the checkpoint instead of running it again.
 */

import type { RegistryEventEmitter } from "../events.js";
import { CruxFailure } from "../failure.js";
import type { ClaimedTask, TaskRegistry } from "../registry.js";
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

export class WorkContext<I = Json> {
  /** The task's input. */
  readonly input: I;
  /** Aborts when the task is cancelled, the lease is lost, or the worker stops. */
  readonly signal: AbortSignal;
  /** The claimed task and its lease. */
  readonly claimed: ClaimedTask;

  readonly #registry: TaskRegistry;
  readonly #events: RegistryEventEmitter;
  readonly #replay: ReplayCache;
  #ordinal = 0;

  constructor(
    registry: TaskRegistry,
    events: RegistryEventEmitter,
    claimed: ClaimedTask,
    signal: AbortSignal,
    mode: ReplayMode,
  ) {
    this.claimed = claimed;
    this.input = claimed.task.input as I;
    this.signal = signal;
    this.#registry = registry;
    this.#events = events;
    const steps = claimed.task.checkpoint?.steps ?? [];
    this.#replay = new ReplayCache(steps, mode);
  }

  /**
   * Run `fn` as step `name`: live, persisted before this returns; or, on a resumed run,
   * replayed from the checkpoint without running. Its result must be JSON; `null` or
   * `undefined` is stored as null, which a later replay treats as not done.
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
    let output: T;
    try {
      output = await fn(this.signal);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await this.#persist(ordinal, {
        ...base,
        status: "err",
        duration_ms: Date.now() - startedMs,
        output: null,
        error: message,
      });
      if (error instanceof CruxFailure) throw error;
      throw new CruxFailure({ kind: "step_failed", step: name, message });
    }
    await this.#persist(ordinal, {
      ...base,
      status: "ok",
      duration_ms: Date.now() - startedMs,
      output: storable(name, output),
      error: null,
    });
    return output;
  }

  #persist(ordinal: number, step: Step): Promise<void> {
    return this.#registry.recordStep(this.claimed.task.id, this.claimed.lease.token, ordinal, step);
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
