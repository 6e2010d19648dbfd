import { checkCruxErr } from "./wire/codec.js";
import { jsonView } from "./wire/json.js";
import type { CruxErr } from "./wire/schema.js";

/**
 * Throw it from a handler or a step to fail the run with a specific CruxErr. The CruxErr is
 * checked here: a malformed one is a ValidationError (path `$.err…`) at construction.
 */
export class CruxFailure extends Error {
  readonly err: CruxErr;

  constructor(err: CruxErr) {
    const valid = checkCruxErr(err, "$.err");
    super(describeCruxErr(valid));
    this.name = "CruxFailure";
    this.err = valid;
  }

  /** For JSON.stringify: name, message and the CruxErr, its u64 bigints as decimal strings. */
  toJSON(): { readonly name: string; readonly message: string; readonly err: unknown } {
    return { name: this.name, message: this.message, err: jsonView(this.err) };
  }
}

function describeCruxErr(err: CruxErr): string {
  switch (err.kind) {
    case "step_failed":
      return err.step === "" ? err.message : `step ${err.step} failed: ${err.message}`;
    case "low_confidence":
      return `step ${err.step} scored ${err.score}, below ${err.threshold}`;
    case "budget_exceeded":
      return `${err.budget_kind} budget exceeded: ${err.actual} > ${err.limit}`;
    case "delegation":
      return `delegation to ${err.to} failed: ${describeCruxErr(err.source)}`;
    case "cancelled":
      return `cancelled: ${err.reason}`;
    case "replay_mismatch":
      return `replay mismatch at step ${err.step}: expected input hash ${err.expected}, got ${err.actual}`;
    case "denied":
      return `step ${err.step} denied: ${err.reason}`;
  }
}
