import { types } from "node:util";
import { ValidationError } from "./errors.js";
import { checkCruxErr } from "./wire/codec.js";
import { jsonView, withJsonView } from "./wire/json.js";
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

/**
 * A CruxErr from what a handler threw or a caller passed: a CruxFailure's (validated again:
 * `err` can be changed after construction); an Error's message (whatever other fields it
 * has); a string; or a CruxErr value, validated. A message comes from code the caller may not
 * control, so it is repaired, not refused: lone surrogates become U+FFFD.
 */
export function toCruxErr(error: unknown): CruxErr {
  let kind: "failure" | "error" | "other";
  try {
    // An Error of another realm (a `vm` context's) is not `instanceof Error`.
    kind =
      error instanceof CruxFailure
        ? "failure"
        : types.isNativeError(error) || error instanceof Error
          ? "error"
          : "other";
  } catch (cause) {
    throw new ValidationError("$.error", "the value cannot be read", { cause }); // a Proxy trap
  }
  if (kind === "failure") return checkCruxErr((error as CruxFailure).err, "$.error.err");
  if (kind === "error") return failure(messageOf(error as Error));
  if (typeof error === "string") return failure(error.toWellFormed());
  return checkCruxErr(error, "$.error");
}

function failure(message: string): CruxErr {
  return withJsonView({ kind: "step_failed", step: "", message });
}

function messageOf(error: Error): string {
  try {
    return String(error.message).toWellFormed();
  } catch (cause) {
    throw new ValidationError("$.error.message", "the message cannot be read", { cause });
  }
}
