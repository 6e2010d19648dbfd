/**
 * JavaScript can throw anything, but a failed run is stored as a message: what a handler or a
 * step threw, as an Error whose message describes it.
 */
import { inspect, types } from "node:util";

/** Longest description of a thrown value kept in a message. */
const MAX_DESCRIPTION = 1000;

/**
 * `thrown` itself if it is an Error (of any realm: a `vm` context's too) with a text message;
 * else an Error saying that `thrower` threw it, and what. Checked by its internal slot, not
 * `instanceof`, which would run a Proxy's trap. Never throws: it runs where a throw would
 * leave the run's promise rejected with nobody to catch it. The description is well-formed
 * text: cutting it short may split a surrogate pair.
 */
export function asError(thrown: unknown, thrower: string): Error {
  const native = types.isNativeError(thrown);
  if (native && hasTextMessage(thrown)) return thrown;
  const what = native ? "an Error whose message is not text" : "a non-Error value";
  return new Error(`${thrower} threw ${what}: ${describe(thrown)}`.toWellFormed());
}

function hasTextMessage(error: Error): boolean {
  try {
    return typeof error.message === "string";
  } catch {
    return false; // a getter that throws
  }
}

/**
 * The value as util.inspect shows it, with as little of the value's own code run as it allows
 * (no custom inspect, toString or Proxy traps; getters shown, not called); cycles are marked.
 * inspect still reads an Error's `stack`, `name` and `message` and a `Symbol.toStringTag`:
 * if one of those throws, only the type is told.
 */
function describe(value: unknown): string {
  let text: string;
  try {
    text = inspect(value, {
      depth: 3,
      breakLength: Number.POSITIVE_INFINITY,
      customInspect: false,
      getters: false,
      showProxy: false,
      maxArrayLength: 20,
      maxStringLength: 200,
    });
  } catch {
    return `something util.inspect cannot show (typeof ${typeof value})`;
  }
  return text.length > MAX_DESCRIPTION ? `${text.slice(0, MAX_DESCRIPTION)}…` : text;
}
