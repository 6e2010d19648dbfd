/**
 * What TypeScript lets `ctx.step` return. `tsc --noEmit -p .` checks this file: each
 * `@ts-expect-error` line must be a type error, every other line must compile. The steps are
 * never run; the runtime check is in failures.test.ts.
 */
import { expect, expectTypeOf, it } from "vitest";
import type { F64, Json } from "../../src/wire/json.js";
import type { WorkContext } from "../../src/worker/context.js";

interface Page {
  readonly url: string;
  readonly words: number;
  readonly tags?: readonly string[];
  readonly links: { readonly href: string; readonly rel: string | null }[];
}

class Point {
  x = 1;
  y = 2;
}

class Counter {
  count = 0;
  increment(): void {
    this.count++;
  }
}

/** Compiled, never called. */
async function steps(ctx: WorkContext, page: Page, json: Json, unknownValue: unknown) {
  // Accepted: JSON values, objects typed by interfaces, nothing, unknown.
  expectTypeOf(await ctx.step("page", () => page)).toEqualTypeOf<Page>();
  expectTypeOf(await ctx.step("page", async () => page)).toEqualTypeOf<Page>();
  expectTypeOf(await ctx.step("json", () => json)).toEqualTypeOf<Json>();
  expectTypeOf(await ctx.step("n", () => 1)).toEqualTypeOf<number>();
  expectTypeOf(await ctx.step("list", () => [1, "two", null])).toEqualTypeOf<
    (string | number | null)[]
  >();
  expectTypeOf(await ctx.step("big", () => 2n ** 63n)).toEqualTypeOf<bigint>();
  expectTypeOf(await ctx.step("f64", () => ({}) as F64)).toEqualTypeOf<F64>();
  await ctx.step("nothing", () => {});
  await ctx.step("nothing", async () => {});
  await ctx.step("undefined", () => undefined);
  await ctx.step("unknown", () => unknownValue);
  // A class with data only is a plain object to TypeScript: the runtime check refuses it.
  await ctx.step("point", () => new Point());

  // Refused: no JSON form.
  // @ts-expect-error a Date
  await ctx.step("date", () => new Date());
  // @ts-expect-error a Date, awaited
  await ctx.step("date", async () => new Date());
  // @ts-expect-error a Date inside an object
  await ctx.step("date", () => ({ when: new Date() }));
  // @ts-expect-error a Date inside an array
  await ctx.step("date", () => [new Date()]);
  // @ts-expect-error maybe a Date
  await ctx.step("date", () => (Math.random() > 0.5 ? "now" : new Date()));
  // @ts-expect-error a function
  await ctx.step("fn", () => () => 1);
  // @ts-expect-error a Map
  await ctx.step("map", () => new Map<string, number>());
  // @ts-expect-error a Set
  await ctx.step("set", () => new Set<number>());
  // @ts-expect-error a class instance with methods
  await ctx.step("counter", () => new Counter());
  // @ts-expect-error a symbol
  await ctx.step("symbol", () => Symbol("s"));
  // @ts-expect-error an object with a method
  await ctx.step("method", () => ({ a: 1, f() {} }));
}

it("ctx.step's result type is checked by tsc (this file compiles)", () => {
  expect(typeof steps).toBe("function");
});
