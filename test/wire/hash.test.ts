import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { contentHash, identityHash } from "../../src/wire/hash.js";
import { F64, type Json, parseJson } from "../../src/wire/json.js";

describe("identityHash", () => {
  it.each<[string, number, bigint]>([
    // Spec section 5 vectors.
    ["fetch", 0, 2124207233303399209n],
    ["fetch", 1, 6231848832354474281n],
    ["draft", 1, 10308880778165991037n],
    ["", 0, 6540239196322574060n],
    // Computed with Rust std's DefaultHasher (`(name, ordinal).hash`): multi-byte UTF-8,
    // exactly one 8-byte block plus tail, several blocks, and the largest u32.
    ["é", 65536, 2452802779697101109n],
    ["😀 emoji", 4294967295, 18211604638862904683n],
    ["12345678", 0, 12072390376377385341n],
    ["a much longer step name that spans words", 256, 8586068735804777762n],
  ])("(%j, %d)", (name, ordinal, expected) => {
    expect(identityHash(name, ordinal)).toBe(expected);
  });

  it.each([[-1], [1.5], [2 ** 32], [Number.NaN], [Number.POSITIVE_INFINITY]])(
    "rejects ordinal %d",
    (ordinal) => {
      expect(() => identityHash("fetch", ordinal)).toThrow(
        expect.objectContaining({ code: "VALIDATION", path: "$.ordinal" }),
      );
    },
  );

  it("is a deterministic u64 that changes with the ordinal", () => {
    const ordinal = fc.integer({ min: 0, max: 0xffff_ffff });
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), ordinal, ordinal, (name, a, b) => {
        const hash = identityHash(name, a);
        expect(identityHash(name, a)).toBe(hash);
        expect(hash >= 0n && hash < 2n ** 64n).toBe(true);
        if (a !== b) expect(identityHash(name, b)).not.toBe(hash);
      }),
    );
  });
});

describe("contentHash", () => {
  it.each<[Json, bigint]>([
    // Spec section 5 vectors.
    ["hello", 6267760168161781001n],
    [[1, 2, 3], 1877153063679178965n],
    // Computed with Rust std's DefaultHasher over the compact JSON bytes.
    [{ a: [new F64(1), 2.5, "é"] }, 12483811512526824326n],
  ])("%j", (key, expected) => {
    expect(contentHash(key)).toBe(expected);
  });

  it("hashes the compact JSON text, so equal documents hash equally and key order counts", () => {
    expect(contentHash(parseJson('{ "b": 1, "a": [1.0] }'))).toBe(
      contentHash({ b: 1, a: [new F64(1)] }),
    );
    expect(contentHash({ a: 1, b: 1 })).not.toBe(contentHash({ b: 1, a: 1 }));
    expect(contentHash(1)).not.toBe(contentHash(new F64(1)));
  });

  it("rejects keys that are not JSON", () => {
    expect(() => contentHash(Number.NaN)).toThrow(
      expect.objectContaining({ code: "VALIDATION", path: "$.key" }),
    );
    expect(() => contentHash({ a: undefined } as unknown as Json)).toThrow(
      expect.objectContaining({ code: "VALIDATION", path: "$.key.a" }),
    );
  });
});
