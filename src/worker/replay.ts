/**
 * The replay rules of the spec (§5): which cached step, if any, answers step call `ordinal`
 * of a resumed run instead of running it again.
 */
import { CruxFailure } from "../failure.js";
import type { Step } from "../wire/schema.js";

export const REPLAY_MODES = ["strict", "lenient"] as const;
export type ReplayMode = (typeof REPLAY_MODES)[number];

export class ReplayCache {
  readonly #steps: readonly Step[];
  readonly #mode: ReplayMode;
  /** Lenient matches already handed out, so one cached step answers one call. */
  readonly #used = new Set<number>();

  constructor(steps: readonly Step[], mode: ReplayMode) {
    this.#steps = steps;
    this.#mode = mode;
  }

  /** How many steps the checkpoint holds. */
  get size(): number {
    return this.#steps.length;
  }

  /**
   * The cached step to replay for this call, or undefined to run it live. Strict mode throws
   * a `replay_mismatch` CruxFailure when the cached step at `ordinal` is another step.
   */
  lookup(
    ordinal: number,
    name: string,
    inputHash: bigint,
    contentHash: bigint | null,
  ): Step | undefined {
    const cached = this.#steps[ordinal];
    const same = cached !== undefined && cached.name === name && cached.input_hash === inputHash;
    const hit = same ? this.#take(ordinal, cached) : undefined;
    if (hit !== undefined) return hit;
    if (this.#mode === "strict") {
      if (cached === undefined || same) return undefined;
      throw new CruxFailure({
        kind: "replay_mismatch",
        step: name,
        expected: cached.input_hash,
        actual: inputHash,
      });
    }
    for (let later = ordinal + 1; later < this.#steps.length; later++) {
      const candidate = this.#steps[later] as Step;
      if (candidate.name !== name || this.#used.has(later) || candidate.output === null) continue;
      if (
        contentHash !== null &&
        candidate.content_hash !== null &&
        candidate.content_hash !== contentHash
      ) {
        continue;
      }
      return this.#take(later, candidate);
    }
    return undefined;
  }

  /** A cached step with no output (it failed or never finished) is a miss: it runs again. */
  #take(index: number, step: Step): Step | undefined {
    if (step.output === null) return undefined;
    this.#used.add(index);
    return step;
  }
}
