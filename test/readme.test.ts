/** The README's usage example really runs, and prints what its comment says. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function usageExample(): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Usage"));
  const match = /```ts\n([\s\S]*?)```/.exec(section);
  if (!match?.[1]) throw new Error("the README has no ts block under ## Usage");
  return match[1];
}

it("the usage example runs and prints the result its comment promises", () => {
  const example = usageExample();
  expect(example.split("\n").filter((line) => line.trim() !== "").length).toBeLessThanOrEqual(20);
  const promised = /console\.log\(.*\/\/ (.*)$/m.exec(example)?.[1];
  expect(promised).toBeDefined();

  const dir = mkdtempSync(join(tmpdir(), "cruxx-readme-"));
  const script = join(ROOT, "test", `.readme-example-${process.pid}.mts`);
  const source = example.replace('"cruxx-registry"', JSON.stringify(join(ROOT, "src/index.ts")));
  writeFileSync(script, source);
  // Run from an empty folder, as a user would: tsx is named by its full path.
  const tsx = pathToFileURL(join(ROOT, "node_modules/tsx/dist/loader.mjs")).href;
  const result = spawnSync(process.execPath, ["--import", tsx, script], {
    cwd: dir,
    encoding: "utf8",
    timeout: 20_000,
  });
  rmSync(script);
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  expect(result.stdout.trim()).toBe(promised);
});
