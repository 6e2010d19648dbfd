/**
 * Lossless JSON that reads and writes exactly what Rust's serde_json does.
 *
 * JSON.parse/JSON.stringify lose u64 values above 2^53 and print `1.0` as `1`, so a
 * checkpoint read and written back would no longer match the Rust original. Here
 * integers stay exact (bigint when unsafe) and integral floats are boxed in {@link F64}
 * so they print again the way the ryu crate wrote them.
 *
 * Known limit: JS objects list array-index-like keys ("0", "42") before other keys, so
 * an object whose keys mix both does not keep its source order.
 */

import { formatPath } from "../errors.js";
import { MAX_DEPTH } from "../limits.js";

/** An f64 whose value is integral (or -0), e.g. `1.0`, `1e21`: kept apart from integers so it prints as Rust wrote it. */
export class F64 {
  constructor(readonly value: number) {}

  /** JSON.stringify writes the number (`1`, not Rust's `1.0`). */
  toJSON(): number {
    return this.value;
  }
}

export type Json =
  | null
  | boolean
  | number
  | bigint
  | string
  | F64
  | readonly Json[]
  | { readonly [key: string]: Json };

/** Text that is not strict JSON; `position` is the UTF-16 index of the offending character. */
export class JsonSyntaxError extends Error {
  override readonly name = "JsonSyntaxError";

  constructor(
    what: string,
    readonly position: number,
    text: string,
  ) {
    super(`${what} at position ${position} (${lineAndColumn(text, position)})`);
  }
}

/** A value that has no JSON form serde_json could read; `path` locates it, e.g. `$.a[2].b`. */
export class JsonValueError extends Error {
  override readonly name = "JsonValueError";

  constructor(
    what: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(`${what} at ${path}`, options);
  }
}

export function parseJson(text: string): Json {
  return new Parser(text).document();
}

/**
 * The value as JSON text. `depth` is how many objects and arrays will enclose the text where
 * it is stored: a document nests at most MAX_DEPTH levels, as the parser allows.
 */
export function stringifyJson(value: unknown, depth = 0): string {
  if (value === null) return "null"; // what most runs end with: no writer for it
  const writer = new Writer(MAX_DEPTH - depth);
  try {
    writer.value(value);
  } catch (err) {
    const fault = asFault(err);
    throw new JsonValueError(fault.message, formatPath("$", fault.path), { cause: fault.cause });
  }
  return writer.out;
}

/**
 * A copy of a decoded value that JSON.stringify can write: u64/i64 bigints as decimal strings,
 * F64 as its number. Decoded values are at most MAX_DEPTH deep, so recursion is safe.
 */
export function jsonView(value: unknown): unknown {
  if (typeof value === "bigint") return String(value);
  if (typeof value !== "object" || value === null) return value;
  if (value instanceof F64) return value.value;
  if (Array.isArray(value)) return value.map(jsonView);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    setOwn(out, key, jsonView((value as Record<string, unknown>)[key]));
  }
  return out;
}

/** `obj[key] = value` as an own property even for "__proto__", which assignment would make the prototype. */
export function setOwn(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/**
 * `value`, given a non-enumerable `toJSON` that writes its {@link jsonView}, as is each object
 * and array inside it that holds a bigint itself: JSON.stringify calls the `toJSON` of every
 * object it meets, so it works on any part a caller picks out.
 */
export function withJsonView<T extends object>(value: T): T {
  viewBigints(value);
  return Object.defineProperty(value, "toJSON", TO_JSON);
}

/**
 * Gives each object and array in `value` that holds a bigint itself the `toJSON`, in one walk
 * of a decoded value (a tree at most MAX_DEPTH deep) that adds nothing where there is none.
 * Returns whether the container of `value` must write it instead: a bigint, or a holder that
 * keeps its own "toJSON" key (or cannot take one).
 */
function viewBigints(value: unknown): boolean {
  if (typeof value === "bigint") return true;
  if (typeof value !== "object" || value === null || value instanceof F64) return false;
  let holds = false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (viewBigints(value[i])) holds = true;
  } else {
    for (const item of Object.values(value)) if (viewBigints(item)) holds = true;
  }
  return (
    holds && (Object.hasOwn(value, "toJSON") || !Reflect.defineProperty(value, "toJSON", TO_JSON))
  );
}

const TO_JSON: PropertyDescriptor = {
  value(this: unknown): unknown {
    return jsonView(this);
  },
  configurable: true,
};

/** Prints like ryu's `format64`, which serde_json uses for every f64. */
export function formatF64(n: number): string {
  if (!Number.isFinite(n)) throw new RangeError(`formatF64: ${n} is not finite`);
  if (n === 0) return Object.is(n, -0) ? "-0.0" : "0.0";
  const abs = Math.abs(n);
  // Without an argument toExponential yields the shortest round-trip digits, nearest to n
  // and exact ties to even: the digits ryu picks.
  return layout(n < 0, abs.toExponential(), 16, -5);
}

/** Prints `n` rounded to f32 like ryu's `format32` (serde_json's f32 output). */
export function formatF32(n: number): string {
  const f = Math.fround(n);
  if (!Number.isFinite(f)) throw new RangeError(`formatF32: ${n} is not finite as f32`);
  if (f === 0) return Object.is(f, -0) ? "-0.0" : "0.0";
  return layout(f < 0, shortestF32(Math.abs(f)), 13, -6);
}

const f32Bits = new Uint32Array(1);
const f32View = new Float32Array(f32Bits.buffer);

/**
 * Shortest digits that read back as the same f32, in toExponential form, chosen like
 * ryu's f2s: the nearest candidate of the shortest length (ties to even) inside the
 * rounding interval, which is narrower below exact powers of two.
 */
function shortestF32(f: number): string {
  f32View[0] = f;
  const bits = f32Bits[0] as number;
  const exponent = bits >>> 23;
  const mantissa = bits & 0x7fffff;
  const m2 = exponent === 0 ? mantissa : mantissa | 0x800000;
  const e2 = (exponent === 0 ? 1 : exponent) - 150; // f = m2 × 2^e2
  const narrowBelow = mantissa === 0 && exponent > 1;
  return (
    (narrowBelow ? undefined : nearestShortest(f, e2)) ?? exactShortest(f, m2, e2, narrowBelow)
  );
}

/**
 * Fast path for a symmetric interval, where the nearest p-digit decimal (toExponential)
 * is inside whenever any p-digit decimal is. Comparing its f64 rounding with the exactly
 * representable bounds is sound unless it lands on a bound; that case, and a possible
 * tie (toExponential rounds ties up, ryu to even), return undefined for the exact path.
 */
function nearestShortest(f: number, e2: number): string | undefined {
  const halfUlp = 2 ** (e2 - 1);
  const lower = f - halfUlp;
  const upper = f + halfUlp;
  for (let p = 1; p <= 9; p++) {
    const candidate = f.toExponential(p - 1);
    const d = Number(candidate);
    if (d === lower || d === upper) return undefined;
    if (d > lower && d < upper) {
      const longer = f.toExponential(p);
      return longer.charAt(longer.indexOf("e") - 1) === "5" ? undefined : candidate;
    }
  }
  return undefined;
}

/**
 * Exact search with BigInt, for what the fast path cannot settle: powers of two (whose
 * lower gap is half as wide), bound hits and ties.
 */
function exactShortest(f: number, m2: number, e2: number, narrowBelow: boolean): string {
  // In units of 2^(e2-2) the value is 4·m2 and its interval is [lower, upper].
  const mv = BigInt(4 * m2);
  const upper = mv + 2n;
  const lower = mv - (narrowBelow ? 1n : 2n);
  const inclusive = m2 % 2 === 0; // round-half-even reads a boundary back as the even neighbour
  const top = decimalExponent(f, mv, e2 - 2);
  for (let p = 1; ; p++) {
    // Scale both sides to integers: binary value × scale vs decimal D × unit.
    const q = top - p + 1;
    const scale = pow2(Math.max(0, e2 - 2)) * pow10(Math.max(0, -q));
    const unit = pow10(Math.max(0, q)) * pow2(Math.max(0, 2 - e2));
    const value = mv * scale;
    const below = value / unit;
    const inside = (d: bigint): boolean => {
      const x = d * unit;
      return inclusive
        ? lower * scale <= x && x <= upper * scale
        : lower * scale < x && x < upper * scale;
    };
    const belowFits = inside(below);
    const aboveFits = inside(below + 1n);
    if (!belowFits && !aboveFits) continue;
    let d = belowFits ? below : below + 1n;
    if (belowFits && aboveFits) {
      const diff = value - below * unit - ((below + 1n) * unit - value);
      if (diff > 0n || (diff === 0n && below % 2n === 1n)) d = below + 1n;
    }
    const all = String(d);
    const digits = all.replace(/0+$/, ""); // only 9…9 rounding up to 10…0 leaves zeros; ryu prints "1e…"
    const tail = digits.length > 1 ? `.${digits.slice(1)}` : "";
    return `${digits.charAt(0)}${tail}e${q + all.length - 1}`;
  }
}

/** The k with 10^k <= mv × 2^s < 10^(k+1), from a float estimate corrected exactly. */
function decimalExponent(f: number, mv: bigint, s: number): number {
  let k = Math.floor(Math.log10(f));
  const compare = (j: number): bigint =>
    mv * pow2(Math.max(0, s)) * pow10(Math.max(0, -j)) -
    pow10(Math.max(0, j)) * pow2(Math.max(0, -s));
  while (compare(k) < 0n) k--;
  while (compare(k + 1) >= 0n) k++;
  return k;
}

function pow2(n: number): bigint {
  return 1n << BigInt(n);
}

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

/**
 * Lays out shortest digits the way ryu does. `exponential` is a positive number in
 * toExponential form; kk is the position of the decimal point relative to the digits
 * (value = 0.digits × 10^kk). `maxFixed`/`minFraction` are ryu's per-type thresholds.
 */
function layout(
  negative: boolean,
  exponential: string,
  maxFixed: number,
  minFraction: number,
): string {
  const e = exponential.indexOf("e");
  const digits = e === 1 ? exponential.charAt(0) : exponential.charAt(0) + exponential.slice(2, e);
  const kk = Number(exponential.slice(e + 1)) + 1;
  const len = digits.length;
  const sign = negative ? "-" : "";
  if (len <= kk && kk <= maxFixed) return `${sign}${digits}${"0".repeat(kk - len)}.0`;
  if (0 < kk && kk <= maxFixed) return `${sign}${digits.slice(0, kk)}.${digits.slice(kk)}`;
  if (minFraction < kk && kk <= 0) return `${sign}0.${"0".repeat(-kk)}${digits}`;
  if (len === 1) return `${sign}${digits}e${kk - 1}`;
  return `${sign}${digits.charAt(0)}.${digits.slice(1)}e${kk - 1}`;
}

// ---------------------------------------------------------------------------------------
// Parsing

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

class Parser {
  private pos = 0;

  constructor(private readonly text: string) {}

  document(): Json {
    this.skipWhitespace();
    const value = this.value(0);
    this.skipWhitespace();
    if (this.pos < this.text.length) this.fail("trailing characters after the JSON value");
    return value;
  }

  private value(depth: number): Json {
    const c = this.text.charCodeAt(this.pos);
    switch (c) {
      case 0x7b: // {
        return this.object(depth + 1);
      case 0x5b: // [
        return this.array(depth + 1);
      case QUOTE:
        return this.string();
      case 0x74: // t
        return this.literal("true", true);
      case 0x66: // f
        return this.literal("false", false);
      case 0x6e: // n
        return this.literal("null", null);
      default:
        if (c === MINUS || (c >= ZERO && c <= NINE)) return this.number();
        return this.unexpected("a JSON value");
    }
  }

  private object(depth: number): Json {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    const text = this.text;
    const obj: Record<string, Json> = {};
    this.pos++;
    this.skipWhitespace();
    if (text.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return obj;
    }
    for (;;) {
      if (text.charCodeAt(this.pos) !== QUOTE) this.unexpected("a string key");
      const key = this.string();
      this.skipWhitespace();
      if (text.charCodeAt(this.pos) !== COLON) this.unexpected("':'");
      this.pos++;
      this.skipWhitespace();
      const value = this.value(depth);
      if (key === "__proto__") {
        setOwn(obj, key, value);
      } else {
        obj[key] = value; // a repeated key keeps its first position and takes the last value, like serde_json
      }
      this.skipWhitespace();
      const c = text.charCodeAt(this.pos++);
      if (c === 0x7d) return obj;
      if (c !== COMMA) {
        this.pos--;
        this.unexpected("',' or '}'");
      }
      this.skipWhitespace();
    }
  }

  private array(depth: number): Json {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    const text = this.text;
    const arr: Json[] = [];
    this.pos++;
    this.skipWhitespace();
    if (text.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return arr;
    }
    for (;;) {
      arr.push(this.value(depth));
      this.skipWhitespace();
      const c = text.charCodeAt(this.pos++);
      if (c === 0x5d) return arr;
      if (c !== COMMA) {
        this.pos--;
        this.unexpected("',' or ']'");
      }
      this.skipWhitespace();
    }
  }

  private string(): string {
    const text = this.text;
    const start = this.pos + 1;
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        this.pos = i + 1;
        return text.slice(start, i);
      }
      if (c === BACKSLASH) return this.escapedString(i);
      if (c < 0x20) this.fail("control character in string", i);
    }
    return this.fail("unterminated string", this.pos);
  }

  /** Validates the rest of a string that has escapes, then lets JSON.parse decode it. */
  private escapedString(firstEscape: number): string {
    const text = this.text;
    const open = this.pos;
    let i = firstEscape;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        this.pos = i + 1;
        return JSON.parse(text.slice(open, i + 1)) as string;
      }
      if (c === BACKSLASH) {
        i = this.escape(i);
      } else {
        if (c < 0x20) this.fail("control character in string", i);
        i++;
      }
    }
    return this.fail("unterminated string", open);
  }

  /** Checks the escape sequence at `i` (a backslash) and returns the index after it. */
  private escape(i: number): number {
    const c = this.text.charCodeAt(i + 1);
    // " \ / b f n r t
    if (
      c === QUOTE ||
      c === BACKSLASH ||
      c === 0x2f ||
      c === 0x62 ||
      c === 0x66 ||
      c === 0x6e ||
      c === 0x72 ||
      c === 0x74
    ) {
      return i + 2;
    }
    if (c !== 0x75) return this.fail("invalid escape in string", i);
    for (let j = i + 2; j < i + 6; j++) {
      if (!isHexDigit(this.text.charCodeAt(j))) this.fail("invalid \\u escape in string", i);
    }
    return i + 6;
  }

  private number(): Json {
    const text = this.text;
    const start = this.pos;
    let i = start;
    if (text.charCodeAt(i) === MINUS) i++;
    const first = text.charCodeAt(i);
    if (first === ZERO) {
      i++;
      if (isDigit(text.charCodeAt(i))) this.fail("leading zero in number", start);
    } else {
      i = this.digits(i);
    }
    let integer = true;
    if (text.charCodeAt(i) === DOT) {
      integer = false;
      i = this.digits(i + 1);
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      integer = false;
      const sign = text.charCodeAt(i + 1);
      i = this.digits(sign === PLUS || sign === MINUS ? i + 2 : i + 1);
    }
    this.pos = i;
    const literal = text.slice(start, i);
    const n = Number(literal);
    if (integer) return Number.isSafeInteger(n) ? n : BigInt(literal);
    if (!Number.isFinite(n)) return this.fail("number out of range", start);
    // Integral floats must print again as `1.0` / `1e21`, not as integers.
    return Number.isInteger(n) ? new F64(n) : n;
  }

  /** Consumes one or more digits from `i`, returning the index after them. */
  private digits(i: number): number {
    if (!isDigit(this.text.charCodeAt(i))) this.fail("expected a digit", i);
    let j = i + 1;
    while (isDigit(this.text.charCodeAt(j))) j++;
    return j;
  }

  private literal<T extends Json>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.unexpected("a JSON value");
    this.pos += word.length;
    return value;
  }

  private skipWhitespace(): void {
    const text = this.text;
    let c = text.charCodeAt(this.pos);
    // space, \t, \n, \r
    while (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) c = text.charCodeAt(++this.pos);
  }

  private unexpected(expected: string): never {
    if (this.pos >= this.text.length) this.fail(`unexpected end of input, expected ${expected}`);
    const found = String.fromCodePoint(this.text.codePointAt(this.pos) ?? 0);
    return this.fail(`unexpected ${JSON.stringify(found)}, expected ${expected}`);
  }

  private fail(what: string, position = this.pos): never {
    throw new JsonSyntaxError(what, position, this.text);
  }
}

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

function isHexDigit(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}

function lineAndColumn(text: string, position: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < position; i = text.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return `line ${line}, column ${position - lineStart + 1}`;
}

// ---------------------------------------------------------------------------------------
// Writing

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const LONE_SURROGATE = /\p{Cs}/u;

/** Internal failure that collects its path while unwinding, so the happy path tracks none. */
class ValueFault extends Error {
  readonly path: (string | number)[] = [];
}

/** The fault `err` is, or one for an error thrown while reading the value (a getter, a Proxy trap). */
function asFault(err: unknown): ValueFault {
  if (err instanceof ValueFault) return err;
  return new ValueFault("the value cannot be read", { cause: err });
}

function within(segment: string | number, err: unknown): ValueFault {
  const fault = asFault(err);
  fault.path.unshift(segment);
  return fault;
}

class Writer {
  out = "";
  /** Containers on the current path: a repeat is a cycle. */
  private readonly open: object[] = [];

  /** @param maxNesting how many levels of containers the value may nest. */
  constructor(private readonly maxNesting: number) {}

  value(value: unknown): void {
    switch (typeof value) {
      case "string":
        this.out += quote(value);
        return;
      case "number":
        this.out += numberText(value);
        return;
      case "boolean":
        this.out += value ? "true" : "false";
        return;
      case "bigint":
        this.out += bigintText(value);
        return;
      case "object":
        if (value === null) this.out += "null";
        else if (value instanceof F64) this.out += f64Text(value);
        else this.container(value);
        return;
      default:
        throw new ValueFault(`${typeof value} is not a JSON value`);
    }
  }

  private container(value: object): void {
    if (this.open.includes(value)) throw new ValueFault("cycle");
    if (this.open.length >= this.maxNesting) {
      throw new ValueFault(`nesting deeper than ${MAX_DEPTH}`);
    }
    this.open.push(value);
    if (Array.isArray(value)) this.array(value);
    else this.object(value);
    this.open.pop();
  }

  private array(arr: readonly unknown[]): void {
    this.out += "[";
    let i = 0;
    try {
      for (; i < arr.length; i++) {
        if (i > 0) this.out += ",";
        this.value(arr[i]);
      }
    } catch (err) {
      throw within(i, err);
    }
    this.out += "]";
  }

  private object(obj: object): void {
    const proto: unknown = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null) {
      throw new ValueFault(`${obj.constructor?.name ?? "object"} is not a plain object`);
    }
    if (Object.getOwnPropertySymbols(obj).length > 0)
      throw new ValueFault("symbol key is not JSON");
    const record = obj as Record<string, unknown>;
    const keys = Object.keys(record);
    this.out += "{";
    let key = "";
    try {
      for (let i = 0; i < keys.length; i++) {
        key = keys[i] as string;
        if (i > 0) this.out += ",";
        this.out += `${quote(key)}:`;
        this.value(record[key]);
      }
    } catch (err) {
      throw within(key, err);
    }
    this.out += "}";
  }
}

/** JSON.stringify escapes exactly like serde_json, except that it keeps lone surrogates. */
function quote(s: string): string {
  const quoted = JSON.stringify(s);
  // Unchanged length means nothing was escaped, so there can be no (escaped) lone surrogate.
  if (quoted.length !== s.length + 2 && LONE_SURROGATE.test(s)) {
    throw new ValueFault("string with a lone surrogate has no UTF-8 form");
  }
  return quoted;
}

function numberText(n: number): string {
  if (!Number.isFinite(n)) throw new ValueFault(`${n} is not a JSON number`);
  // Exact integers print as integers; beyond 2^53 a JS number can only have come from an f64.
  if (Number.isSafeInteger(n) && !Object.is(n, -0)) return String(n);
  return formatF64(n);
}

function bigintText(n: bigint): string {
  if (n < I64_MIN || n > U64_MAX) throw new ValueFault(`${n} is outside the i64/u64 range`);
  return String(n);
}

function f64Text(f: F64): string {
  if (typeof f.value !== "number" || !Number.isFinite(f.value)) {
    throw new ValueFault(`F64(${String(f.value)}) is not a JSON number`);
  }
  return formatF64(f.value);
}
