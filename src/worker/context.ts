/**
 * What a handler gets for one run: the input, an AbortSignal, and `step()`, which runs a
 * named piece of work once, persists its result before returning, and on a resumed run
 * answers from the checkpoint instead of running it again.
 */

import { jsonValue, optionsObject } from "../arguments.js";
import { hasErrorCode, ValidationError } from "../errors.js";
import { CruxFailure } from "../failure.js";
import { checkText, DEPTH, MAX_STEP_NAME_LENGTH } from "../limits.js";
import type { ClaimedTask, StepResult } from "../record.js";
import { contentHash, identityHash } from "../wire/hash.js";
import type { Json } from "../wire/json.js";
import type { CruxErr, Step } from "../wire/schema.js";
import type { StepEntry, WorkerHost } from "./host.js";
import { ReplayCache, type ReplayMode } from "./replay.js";
import { asError } from "./thrown.js";

/** What TypeScript says instead of a type a step may not return. */
type NotJson = "not JSON: a step's result has no functions, methods or symbols";

/**
 * What TypeScript lets a step return: values with a JSON form, objects typed by interfaces
 * included (and `unknown`/`any`). A Date, Map, Set, function, symbol or other object with
 * methods is refused at compile time; what types cannot show (a class instance without
 * methods, `undefined` inside an object, a bigint beyond u64) is refused when the step runs.
 */
export type StepValue<T> = unknown extends T
  ? T
  : // biome-ignore lint/suspicious/noConfusingVoidType: a step such as `() => {}` returns void
    T extends Json | undefined | void
    ? T
    : T extends (...args: never) => unknown
      ? NotJson
      : T extends object
        ? { [K in keyof T]: K extends symbol ? NotJson : StepValue<T[K]> }
        : NotJson;

/** A step function's result, checked as a StepValue (awaited first if it is a promise). */
type StepReturn<T> = T extends PromiseLike<infer U> ? PromiseLike<StepValue<U>> : StepValue<T>;

/**
 * Errors thrown because a step's or a handler's result cannot be stored, with the CruxErr that
 * fails the task: the same result comes back on every run, so no retry can heal it.
 */
const unstorable = new WeakMap<object, CruxErr>();

/** Mark `error` (a result's VALIDATION) as failing the task for good with `err`. */
export function failsForGood(error: object, err: CruxErr): void {
  unstorable.set(error, err);
}

/** The CruxErr to fail the task with for good, if `error` was marked by failsForGood. */
export function finalFailure(error: unknown): CruxErr | undefined {
  return typeof error === "object" && error !== null ? unstorable.get(error) : undefined;
}

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

  readonly #host: Pick<WorkerHost, "events" | "recordSteps">;
  readonly #replay: ReplayCache;
  readonly #cancel: () => void;
  readonly #abort: { readonly signal: AbortSignal };
  #ordinal = 0;
  /** Replayed steps, recorded again (attempt 0) with the next write rather than one by one. */
  #replayed: StepEntry[] = [];

  constructor(
    host: Pick<WorkerHost, "events" | "recordSteps">,
    claimed: ClaimedTask,
    control: RunControl,
    mode: ReplayMode,
  ) {
    this.claimed = claimed;
    this.input = claimed.task.input as I;
    this.#abort = control.abort;
    this.#cancel = control.cancel;
    this.#host = host;
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
   * treats as not done. A result that cannot be stored throws a ValidationError naming the
   * step (`$.step("fetch").output.when`), and the worker fails the task for good.
   */
  async step<T>(
    name: string,
    fn: (signal: AbortSignal) => T & StepReturn<T>,
    options: StepOptions = {},
  ): Promise<Awaited<T>> {
    this.signal.throwIfAborted();
    const key = stepKey(name, options);
    const ordinal = this.#ordinal++;
    const inputHash = identityHash(name, ordinal);
    const keyHash = key === undefined ? null : contentHash(key);
    const cached = this.#replay.lookup(ordinal, name, inputHash, keyHash);
    if (cached !== undefined) {
      this.#replayed.push({
        ordinal,
        step: { ...cached, input_hash: inputHash, attempt: 0, duration_ms: 0 },
        replayed: true,
      });
      this.#host.events.emit("step", { id: this.claimed.task.id, name, ordinal, replayed: true });
      return cached.output as Awaited<T>;
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
    let output: Awaited<T>;
    try {
      output = await fn(this.signal);
    } catch (thrown) {
      const error = asError(thrown, "the step");
      // A third-party error's message may hold a lone surrogate: repaired, it can be stored.
      const message = error.message.toWellFormed();
      await record({ status: "err", output: null, error: message });
      if (error instanceof CruxFailure) throw error;
      throw new CruxFailure({ kind: "step_failed", step: name, message });
    }
    try {
      await record({ status: "ok", output: storable(name, output), error: null });
    } catch (error) {
      if (!hasErrorCode(error, "VALIDATION")) throw error;
      const message = `its result cannot be stored: ${error.message}`;
      failsForGood(error, { kind: "step_failed", step: name, message });
      // Recorded as failed, so a handler that catches this can go on with its next step.
      await record({ status: "err", output: null, error: message });
      throw error;
    }
    return output;
  }

  /** Persist replayed steps not yet written; the worker calls it before ending the run. */
  async flush(): Promise<void> {
    if (this.#replayed.length > 0) await this.#persist();
  }

  async #persist(live?: { ordinal: number; step: Step }): Promise<void> {
    const entries = live === undefined ? this.#replayed : [...this.#replayed, live];
    const { id } = this.claimed.task;
    const result: StepResult = await this.#host.recordSteps(id, this.claimed.lease.token, entries);
    this.#replayed = [];
    if (result.cancelRequested) this.#cancel();
  }
}

/**
 * The step's key, once its name and options are checked: checked before `fn` runs, so no side
 * effect runs for a step that cannot be recorded. The same call fails the same way on every
 * run, so its ValidationError fails the task for good.
 */
function stepKey(name: string, options: StepOptions): Json | undefined {
  try {
    checkText(name, "$.name", 1, MAX_STEP_NAME_LENGTH);
    const { key } = optionsObject(options, ["key"]);
    return key === undefined ? undefined : jsonValue(key, `$.step(${JSON.stringify(name)}).key`, 0);
  } catch (error) {
    if (error instanceof ValidationError) {
      const step = typeof name === "string" && name.length <= MAX_STEP_NAME_LENGTH ? name : "";
      const message = `the step cannot be recorded: ${error.message}`;
      failsForGood(error, { kind: "step_failed", step: step.toWellFormed(), message });
    }
    throw error;
  }
}

/** The step's result as stored: JSON, or a ValidationError whose path names the step. */
function storable(name: string, output: unknown): Json {
  if (output === undefined || output === null) return null;
  // A step record is one level inside the steps array; its output one more.
  return jsonValue(output, `$.step(${JSON.stringify(name)}).output`, DEPTH.step + 1);
}
