/**
 * openRegistry checks every option, the registry's and the backend's, before it creates or
 * migrates anything: a refused option leaves no file behind.
 */
import { existsSync, readdirSync } from "node:fs";
import { dirname } from "node:path";
import { expect, it } from "vitest";
import { ValidationError } from "../../src/errors.js";
import { type OpenRegistryOptions, openRegistry } from "../../src/open.js";
import { tempDbPath } from "../support/backends.js";

const BAD: readonly [string, unknown][] = [
  ["casRetries", 0],
  ["maxInputBytes", -1],
  ["clock", 5],
  ["clock", "Date.now"],
  ["retryBackoff", 5],
  ["retryBackoff", { baseMs: 0 }],
  ["durability", "fast"],
  ["busyTimeoutMs", -1],
  ["readOnly", "yes"],
];

it.each(BAD)("openRegistry with %s: %o is refused and creates no file", async (option, value) => {
  const path = tempDbPath();
  const options = { [option]: value } as OpenRegistryOptions;
  const error = await openRegistry(path, options).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ValidationError);
  expect((error as ValidationError).path.startsWith(`$.${option}`)).toBe(true);
  expect(existsSync(path)).toBe(false);
  expect(readdirSync(dirname(path))).toEqual([]);
});

it("options that are not an object are refused", async () => {
  const path = tempDbPath();
  const error = await openRegistry(path, null as never).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ValidationError);
  expect(readdirSync(dirname(path))).toEqual([]);
});
