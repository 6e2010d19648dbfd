import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isCruxId, isTaskId, newCruxId, newTaskId, UlidSource } from "../../src/ids.js";

const BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const decodeTime = (ulid: string) =>
  [...ulid.slice(0, 10)].reduce((t, c) => t * 32 + BASE32.indexOf(c), 0);
const MAX_TIME = 2 ** 48 - 1;

describe("ULIDs", () => {
  it("sort in minting order and carry the latest time seen, whatever the clock does", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: MAX_TIME }), { minLength: 1 }), (times) => {
        const source = new UlidSource();
        let previous = "";
        let latest = -1;
        for (const time of times) {
          const id = source.next(time);
          latest = Math.max(latest, time);
          expect(id).toMatch(/^[0-7][0-9A-HJKMNP-TV-Z]{25}$/);
          expect(decodeTime(id)).toBe(latest);
          expect(id > previous).toBe(true);
          previous = id;
        }
      }),
    );
  });

  it("are random within a millisecond's first id, and incremented after it", () => {
    const a = new UlidSource();
    const b = new UlidSource();
    const first = a.next(1_000);
    expect(first).not.toBe(b.next(1_000));
    const second = a.next(1_000);
    expect(second.slice(0, 10)).toBe(first.slice(0, 10));
    expect(randomPart(second) - randomPart(first)).toBe(1n);
  });

  it("refuse a time outside 48 bits", () => {
    const source = new UlidSource();
    for (const bad of [-1, MAX_TIME + 1, 1.5, Number.NaN]) {
      expect(() => source.next(bad)).toThrow(
        expect.objectContaining({ code: "VALIDATION", path: "$.now" }),
      );
    }
  });

  it("make task and crux ids of the documented shape", () => {
    expect(isTaskId(newTaskId())).toBe(true);
    expect(isCruxId(newCruxId())).toBe(true);
    expect(isTaskId(newCruxId())).toBe(false);
  });
});

/** The 80-bit random part of a ULID as a number. */
function randomPart(ulid: string): bigint {
  return [...ulid.slice(10)].reduce((n, c) => n * 32n + BigInt(BASE32.indexOf(c)), 0n);
}
