import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CRUX_ID_PATTERN,
  isCruxId,
  isTaskId,
  MAX_TIME,
  newCruxId,
  newTaskId,
  TASK_ID_PATTERN,
  ulidMinter,
} from "../../src/ids.js";

const BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const decodeTime = (ulid: string) =>
  [...ulid.slice(0, 10)].reduce((t, c) => t * 32 + BASE32.indexOf(c), 0);
const VALIDATION_AT_NOW = expect.objectContaining({ code: "VALIDATION", path: "$.now" });

describe("ULIDs", () => {
  it("sort in minting order and carry the latest time seen, whatever the clock does", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: MAX_TIME }), { minLength: 1 }), (times) => {
        const mint = ulidMinter();
        let previous = "";
        let latest = -1;
        for (const time of times) {
          const id = mint(time);
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
    const a = ulidMinter();
    const b = ulidMinter();
    const first = a(1_000);
    expect(first).not.toBe(b(1_000));
    const second = a(1_000);
    expect(second.slice(0, 10)).toBe(first.slice(0, 10));
    expect(randomPart(second) - randomPart(first)).toBe(1n);
  });

  it("carry time 0, which the ulid package would read as Date.now()", () => {
    const mint = ulidMinter();
    const first = mint(0);
    const second = mint(0);
    expect(decodeTime(first)).toBe(0);
    expect(decodeTime(second)).toBe(0);
    expect(randomPart(second) - randomPart(first)).toBe(1n);
    const later = mint(1);
    expect(decodeTime(later)).toBe(1);
    expect(later > second).toBe(true);
    const behind = mint(0);
    expect(decodeTime(behind)).toBe(1);
    expect(behind > later).toBe(true);
  });

  it("refuse a time outside 48 bits", () => {
    const mint = ulidMinter();
    for (const bad of [-1, MAX_TIME + 1, 1.5, Number.NaN]) {
      expect(() => mint(bad)).toThrow(VALIDATION_AT_NOW);
    }
  });

  it("refuse to mint once the random part is used up, and mint again at a later time", () => {
    const mint = ulidMinter(() => 0.999); // every random digit is Z: the largest random part
    const last = mint(5);
    expect(last.slice(10)).toBe("Z".repeat(16));
    const exhausted = expect.objectContaining({
      code: "VALIDATION",
      path: "$.now",
      cause: expect.objectContaining({ name: "ULIDError" }),
    });
    for (const time of [5, 4, 0]) expect(() => mint(time)).toThrow(exhausted);
    const next = mint(6);
    expect(decodeTime(next)).toBe(6);
    expect(next > last).toBe(true);
  });

  it("make task and crux ids of the documented shape", () => {
    expect(isTaskId(newTaskId())).toBe(true);
    expect(isCruxId(newCruxId())).toBe(true);
    expect(isTaskId(newCruxId())).toBe(false);
  });
});

describe("newTaskId and newCruxId", () => {
  /** A clock that moves on (or stands still) and now and then jumps back. */
  const clock = fc
    .tuple(
      fc.integer({ min: 0, max: MAX_TIME }),
      fc.array(fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: -1_000_000, max: -1 })), {
        minLength: 1,
        maxLength: 50,
      }),
    )
    .map(([start, steps]) => {
      let now = start;
      return steps.map((step) => {
        now = Math.min(MAX_TIME, Math.max(0, now + step));
        return now;
      });
    });

  it("mint ids of their pattern, strictly increasing and on the latest time seen", () => {
    fc.assert(
      fc.property(
        clock,
        fc.array(fc.boolean(), { minLength: 50, maxLength: 50 }),
        (times, kinds) => {
          // Every id shares one minter: the first id says which time it already stands at.
          let previous = newTaskId(times[0]).slice("task_".length);
          let latest = decodeTime(previous);
          times.forEach((now, i) => {
            const id: string = kinds[i] ? newTaskId(now) : newCruxId(now);
            expect(id).toMatch(kinds[i] ? TASK_ID_PATTERN : CRUX_ID_PATTERN);
            const ulid = id.slice(id.indexOf("_") + 1);
            latest = Math.max(latest, now);
            expect(decodeTime(ulid)).toBe(latest);
            expect(ulid > previous).toBe(true);
            previous = ulid;
          });
        },
      ),
    );
  });

  it("refuse a `now` that is not an integer from 0 to 2^48 - 1 with VALIDATION at $.now", () => {
    const bad = fc.oneof(
      fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }),
      fc.integer({ min: MAX_TIME + 1, max: Number.MAX_SAFE_INTEGER }),
      fc.double({ noInteger: true }),
      fc.constantFrom(Number.MAX_SAFE_INTEGER + 1, Number.POSITIVE_INFINITY),
      fc
        .anything({ withNullPrototype: true })
        .filter((value) => typeof value !== "number" && value !== undefined), // undefined is Date.now()
    );
    fc.assert(
      fc.property(bad, fc.boolean(), (now, task) => {
        const mint = task ? newTaskId : newCruxId;
        expect(() => mint(now as number)).toThrow(VALIDATION_AT_NOW);
      }),
    );
  });
});

/** The 80-bit random part of a ULID as a number. */
function randomPart(ulid: string): bigint {
  return [...ulid.slice(10)].reduce((n, c) => n * 32n + BigInt(BASE32.indexOf(c)), 0n);
}
