import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  F64,
  formatF32,
  formatF64,
  type Json,
  JsonSyntaxError,
  JsonValueError,
  parseJson,
  stringifyJson,
} from "../../src/wire/json.js";
import { arbitraryJson, finiteDouble } from "../support/arbitraries.js";

/** Reads a copied Rust-written fixture; the files end with one newline that is not part of the JSON. */
function fixture(name: string): string {
  const text = readFileSync(new URL(`../fixtures/${name}`, import.meta.url), "utf8");
  expect(text.endsWith("}\n")).toBe(true);
  return text.slice(0, -1);
}

describe("round trips of serde_json output", () => {
  it.each([
    ["1.0"],
    ["2.5"],
    ["1e21"],
    ["1e-7"],
    ["0.001234"],
    ["-0.0"],
    ["0.0"],
    ["0"],
    ["-17"],
    ["1000000000000000.0"],
    ["1e16"],
    ["1.234e33"],
    ["5e-324"],
    ["1.7976931348623157e308"],
    ["18446744073709551615"],
    ["-9223372036854775808"],
    ["9007199254740993"],
    ["9007199254740991"],
    ["[]"],
    ["{}"],
    ['{"__proto__":1}'],
    ['{"__proto__":{"constructor":[null,true,false]},"toString":"x"}'],
    ['{"b":{"a":[1,2.5,{"c":[]},"d"]},"a":null}'],
    ['"tab\\tquote\\"backslash\\\\nl\\ncr\\rff\\fbs\\b"'],
    ['"\\u0000\\u001f\u007f/é😀\u2028"'],
    ['{"ключ":"значение","emoji 😀":"🎉"}'],
    ['{"confidence":0.82,"duration_ms":1200,"input_hash":10308880778165991037}'],
  ])("%s", (text) => {
    expect(stringifyJson(parseJson(text))).toBe(text);
  });

  it.each([["task-pending.json"], ["task-with-checkpoint.json"]])("fixture %s", (name) => {
    const text = fixture(name);
    expect(stringifyJson(parseJson(text))).toBe(text);
  });

  it("keeps u64 hashes exact and integral floats boxed in the checkpoint fixture", () => {
    const task = parseJson(fixture("task-with-checkpoint.json")) as Record<string, Json>;
    const checkpoint = task.checkpoint as Record<string, Json>;
    const [fetch, draft] = checkpoint.steps as Record<string, Json>[];
    expect(fetch?.confidence).toStrictEqual(new F64(1));
    expect(fetch?.input_hash).toBe(2124207233303399209n);
    expect(draft?.content_hash).toBe(16650332726920625432n);
    expect(draft?.confidence).toBe(0.82);
    expect(draft?.duration_ms).toBe(1200);
  });
});

describe("parseJson values", () => {
  it.each<[string, Json]>([
    ["1.0", new F64(1)],
    ["1e21", new F64(1e21)],
    ["-0.0", new F64(-0)],
    ["1E2", new F64(100)],
    ["2.5", 2.5],
    ["1e-7", 1e-7],
    ["9007199254740991", 9007199254740991],
    ["-9007199254740991", -9007199254740991],
    ["9007199254740992", 9007199254740992n],
    ["18446744073709551615", 18446744073709551615n],
    ["18446744073709551616", 18446744073709551616n],
    ["-9223372036854775809", -9223372036854775809n],
    ["-0", -0],
    ['"a\\u00e9\\ud83d\\ude00\\/"', "aé😀/"],
    [' \t\n\r[ 1 , { "a" : null } ] \n', [1, { a: null }]],
  ])("%s", (text, expected) => {
    expect(parseJson(text)).toStrictEqual(expected);
  });

  it("stores __proto__ as an own key without touching the prototype", () => {
    const value = parseJson('{"__proto__":{"polluted":true}}') as Record<string, Json>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(["__proto__"]);
    expect(Object.getOwnPropertyDescriptor(value, "__proto__")?.value).toEqual({ polluted: true });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("lets the last duplicate key win, at the first key's position", () => {
    expect(stringifyJson(parseJson('{"a":1,"b":2,"a":3}'))).toBe('{"a":3,"b":2}');
  });

  it("accepts nesting up to 512 levels", () => {
    const text = `${"[".repeat(512)}${"]".repeat(512)}`;
    expect(stringifyJson(parseJson(text))).toBe(text);
  });
});

describe("parseJson rejects what is not strict JSON", () => {
  it.each<[string, string, number]>([
    ["", "unexpected end of input", 0],
    ["   ", "unexpected end of input", 3],
    ["[1,]", "expected a JSON value", 3],
    ['{"a":1,}', "expected a string key", 7],
    ["01", "leading zero", 0],
    ["-01", "leading zero", 0],
    ["-", "expected a digit", 1],
    ["1.", "expected a digit", 2],
    [".5", "expected a JSON value", 0],
    ["1e", "expected a digit", 2],
    ["1e+", "expected a digit", 3],
    ["+1", "expected a JSON value", 0],
    ["[1 2]", "expected ',' or ']'", 3],
    ['{"a" 1}', "expected ':'", 5],
    ['{"a":1 "b":2}', "expected ',' or '}'", 7],
    ["{a:1}", "expected a string key", 1],
    ["'a'", "expected a JSON value", 0],
    ['"abc', "unterminated string", 0],
    ['"a\\"', "unterminated string", 0],
    ['"\\x"', "invalid escape", 1],
    ['"\\u12G4"', "invalid \\u escape", 1],
    ['"a\tb"', "control character", 2],
    ['"a\\n\nb"', "control character", 4],
    ["NaN", "expected a JSON value", 0],
    ["Infinity", "expected a JSON value", 0],
    ["tru", "expected a JSON value", 0],
    ["nul", "expected a JSON value", 0],
    ["1 2", "trailing characters", 2],
    ["[1]x", "trailing characters", 3],
    ["/*c*/1", "expected a JSON value", 0],
    ["1e400", "number out of range", 0],
    ["[-1e400]", "number out of range", 1],
    ["\uFEFF1", "expected a JSON value", 0],
    ["[", "unexpected end of input", 1],
    ['{"a":', "unexpected end of input", 5],
    [`${"[".repeat(513)}${"]".repeat(513)}`, "nesting deeper than 512", 512],
  ])("%j", (text, what, position) => {
    let caught: unknown;
    try {
      parseJson(text);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(JsonSyntaxError);
    const err = caught as JsonSyntaxError;
    expect(err.message).toContain(what);
    expect(err.position).toBe(position);
    expect(err.message).toContain(`at position ${position}`);
  });

  it("reports line and column", () => {
    expect(() => parseJson('{\n  "a": tru\n}')).toThrow("at position 9 (line 2, column 8)");
  });
});

describe("stringifyJson", () => {
  it.each<[unknown, string]>([
    [5, "5"],
    [-0, "-0.0"],
    [0.1, "0.1"],
    [1e21, "1e21"],
    [2 ** 53, "9007199254740992.0"],
    [Number.MAX_SAFE_INTEGER, "9007199254740991"],
    [new F64(5), "5.0"],
    [new F64(-0), "-0.0"],
    [2n ** 64n - 1n, "18446744073709551615"],
    [-(2n ** 63n), "-9223372036854775808"],
    [3n, "3"],
    [
      '\b\f\n\r\t"\\\u0001\u001f\u007f/é\u2028😀',
      '"\\b\\f\\n\\r\\t\\"\\\\\\u0001\\u001f\u007f/é\u2028😀"',
    ],
    [{ b: [true, false, null], a: {} }, '{"b":[true,false,null],"a":{}}'],
    [Object.assign(Object.create(null) as object, { k: 1 }), '{"k":1}'],
  ])("%o", (value, expected) => {
    expect(stringifyJson(value)).toBe(expected);
  });

  it("writes a shared (non-cyclic) object each time it occurs", () => {
    const shared = { x: 1 };
    expect(stringifyJson([shared, { y: shared }])).toBe('[{"x":1},{"y":{"x":1}}]');
  });

  const cyclic: Record<string, unknown[]> = { a: [] };
  cyclic.a?.push(cyclic);
  const holey = [1];
  holey[2] = 3;
  class Point {
    x = 1;
  }

  it.each<[string, unknown, string]>([
    ["undefined value", { a: undefined }, "$.a"],
    ["undefined at top level", undefined, "$"],
    ["function", [1, () => 1], "$[1]"],
    ["symbol value", { s: Symbol("s") }, "$.s"],
    ["symbol key", { [Symbol("k")]: 1 }, "$"],
    ["cycle", cyclic, "$.a[0]"],
    ["NaN", Number.NaN, "$"],
    ["Infinity", { x: [1, Number.POSITIVE_INFINITY] }, "$.x[1]"],
    ["F64 NaN", { c: new F64(Number.NaN) }, "$.c"],
    ["bigint 2^64", 2n ** 64n, "$"],
    ["bigint below i64", [-(2n ** 63n) - 1n], "$[0]"],
    ["Date", { d: new Date(0) }, "$.d"],
    ["Map", new Map(), "$"],
    ["Set", [new Set([1])], "$[0]"],
    ["typed array", { bytes: new Uint8Array(2) }, "$.bytes"],
    ["class instance", { p: new Point() }, "$.p"],
    ["toJSON method", { toJSON: () => "x" }, "$.toJSON"],
    ["hole in array", holey, "$[1]"],
    ["lone surrogate", { k: "a\ud800b" }, "$.k"],
    ["lone surrogate key", { "\udc00": 1 }, '$["\\udc00"]'],
    ["non-identifier key", { "a b": { c: undefined } }, '$["a b"].c'],
    ["too deep", JSON.parse(`${"[".repeat(513)}${"]".repeat(513)}`), `$${"[0]".repeat(512)}`],
  ])("rejects %s", (_, value, path) => {
    let caught: unknown;
    try {
      stringifyJson(value);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(JsonValueError);
    expect((caught as JsonValueError).path).toBe(path);
    expect((caught as JsonValueError).message).toContain(`at ${path}`);
  });
});

describe("formatF64 (ryu format64 layout)", () => {
  it.each<[number, string]>([
    [0, "0.0"],
    [-0, "-0.0"],
    [1, "1.0"],
    [-1.5, "-1.5"],
    [12.34, "12.34"],
    [1e15, "1000000000000000.0"],
    [1e16, "1e16"],
    [1.5e16, "1.5e16"],
    [123456789012345.6, "123456789012345.6"],
    [0.001234, "0.001234"],
    [1e-5, "0.00001"],
    [1e-6, "1e-6"],
    [1.5e-6, "1.5e-6"],
    [1.234e33, "1.234e33"],
    [5e-324, "5e-324"],
    [Number.MAX_VALUE, "1.7976931348623157e308"],
    [-1e-300, "-1e-300"],
    // An exact tie at 17 digits: ryu rounds half to even (Rust's std Display would print ...623).
    [1658206780088562 + 0.25, "1658206780088562.2"],
  ])("%d", (n, expected) => {
    expect(formatF64(n)).toBe(expected);
  });

  it("rejects non-finite input", () => {
    expect(() => formatF64(Number.NaN)).toThrow(RangeError);
    expect(() => formatF64(Number.NEGATIVE_INFINITY)).toThrow(RangeError);
  });
});

describe("formatF32 (ryu format32 layout)", () => {
  it.each<[number, string]>([
    [0, "0.0"],
    [-0, "-0.0"],
    [1, "1.0"],
    [0.82, "0.82"],
    [0.1, "0.1"],
    [1 / 3, "0.33333334"],
    [0.7, "0.7"],
    [-0.25, "-0.25"],
    [1e-5, "0.00001"],
    [1e-6, "0.000001"],
    [1e-7, "1e-7"],
    [1e12, "1000000000000.0"],
    [1e13, "1e13"],
    [123456789, "123456790.0"],
    [3.4028234663852886e38, "3.4028235e38"],
    [1e-45, "1e-45"],
    // 2^-96 sits at a power of two whose lower gap is half as wide: ryu finds 8 digits, not 9.
    [2 ** -96, "1.2621775e-29"],
    // 5.73828125 is an exact tie at 8 digits: ryu rounds half to even (std Display: ...813).
    [5.73828125, "5.7382812"],
  ])("%d", (n, expected) => {
    expect(formatF32(n)).toBe(expected);
  });

  it("rejects values that are not finite as f32", () => {
    expect(() => formatF32(Number.NaN)).toThrow(RangeError);
    expect(() => formatF32(1e39)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------------------
// Properties

/**
 * Strict structural equality: Object.is for numbers, same key order for objects. Not
 * toStrictEqual, whose class check reads a "constructor" key as the object's class.
 */
function same(a: unknown, b: unknown): boolean {
  if (a instanceof F64) return b instanceof F64 && Object.is(a.value, b.value);
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((item, i) => same(item, b[i]));
  }
  if (a !== null && typeof a === "object") {
    if (b === null || typeof b !== "object" || Array.isArray(b) || b instanceof F64) return false;
    const aKeys = Object.keys(a);
    const bKeys = Object.keys(b);
    return (
      aKeys.length === bKeys.length &&
      aKeys.every(
        (k, i) =>
          k === bKeys[i] &&
          same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]),
      )
    );
  }
  return Object.is(a, b);
}

/** What JSON.parse would give for the same text: it cannot tell 1.0 from 1 or keep big integers. */
function lossy(value: Json): unknown {
  if (value instanceof F64) return value.value;
  if (typeof value === "bigint") return Number(value);
  if (Array.isArray(value)) return value.map(lossy);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      Object.defineProperty(out, k, {
        value: lossy(v),
        writable: true,
        enumerable: true,
        configurable: true,
      });
    }
    return out;
  }
  return value;
}

describe("properties", () => {
  it("parse(stringify(v)) equals v and re-stringifies identically", () => {
    fc.assert(
      fc.property(arbitraryJson, (value) => {
        const text = stringifyJson(value);
        const back = parseJson(text);
        expect(same(back, value)).toBe(true);
        expect(stringifyJson(back)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });

  it("formatF64 reads back as the same double", () => {
    fc.assert(
      fc.property(finiteDouble, (x) => {
        expect(Object.is(Number(formatF64(x)), x)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it("formatF64 matches JS where both use fixed notation (1e-5 <= |x| < 1e16)", () => {
    const magnitude = fc.double({ min: 1e-5, max: 1e16, maxExcluded: true, noNaN: true });
    fc.assert(
      fc.property(magnitude, fc.boolean(), (abs, negative) => {
        const x = negative ? -abs : abs;
        expect(formatF64(x)).toBe(Number.isInteger(x) ? `${x}.0` : String(x));
      }),
      { numRuns: 5000 },
    );
  });

  it("formatF64 matches JS where both use exponents (|x| >= 1e21 or |x| < 1e-7)", () => {
    const tiny = fc.double({ min: Number.MIN_VALUE, max: 1e-7, maxExcluded: true, noNaN: true });
    const huge = fc.double({ min: 1e21, noNaN: true, noDefaultInfinity: true });
    fc.assert(
      fc.property(fc.oneof(tiny, huge), fc.boolean(), (abs, negative) => {
        const x = negative ? -abs : abs;
        expect(formatF64(x)).toBe(String(x).replace("e+", "e"));
      }),
      { numRuns: 5000 },
    );
  });

  it("formatF32 reads back as the same f32 with at most 9 digits", () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (x) => {
        const text = formatF32(x);
        expect(Object.is(Math.fround(Number(text)), x)).toBe(true);
        const digits = text
          .replace(/e.*$/, "")
          .replace(/[-.]/g, "")
          .replace(/^0+|0+$/g, "");
        expect(digits.length).toBeLessThanOrEqual(9);
      }),
      { numRuns: 5000 },
    );
  });

  it("agrees with JSON.parse on anything JSON.stringify writes, up to F64 and bigint", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.constantFrom(undefined, 2), (value, indent) => {
        const text = JSON.stringify(value, null, indent);
        expect(same(lossy(parseJson(text)), JSON.parse(text))).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});
