/**
 * JavaScript can throw anything, but a failed run is stored as a message: what a handler or a
 * step threw, as an Error whose message describes it.
 */
import { inspect, types } from "node:util";

/** Longest description of a thrown value kept in a message. */
const MAX_DESCRIPTION = 1000;

/**
 * `thrown` itself if it is an Error; else an Error saying that `thrower` threw it, and what.
 * Checked by its internal slot, not `instanceof`, which would run a Proxy's trap. The
 * description is well-formed text: cutting it short may split a surrogate pair.
 */
export function asError(thrown: unknown, thrower: string): Error {
  if (types.isNativeError(thrown)) return thrown;
  return new Error(`${thrower} threw a non-Error value: ${describe(thrown)}`.toWellFormed());
}

/**
 * The value as util.inspect shows it. None of the value's own code runs (getters, custom
 * inspect, toString, Proxy traps), so describing it cannot throw; cycles are marked.
 */
function describe(value: unknown): string {
  const text = inspect(value, {
    depth: 3,
    breakLength: Number.POSITIVE_INFINITY,
    customInspect: false,
    getters: false,
    showProxy: false,
    maxArrayLength: 20,
    maxStringLength: 200,
  });
  return text.length > MAX_DESCRIPTION ? `${text.slice(0, MAX_DESCRIPTION)}…` : text;
}
