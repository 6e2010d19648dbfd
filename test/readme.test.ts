/** The README's usage examples really run, and print what their comments say. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The ts blocks under ## Usage that stand alone: they import the package. */
function usageExamples(): string[] {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("\n## Usage");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const blocks = [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] ?? "");
  return blocks.filter((block) => block.includes('from "cruxx-registry"'));
}

it("the README has two usage examples, workers and the seed API with a Crux, and they type-check", () => {
  const examples = usageExamples();
  expect(examples).toHaveLength(2);
  expect(examples[1]).toContain("registry.checkpoint(id, crux)");
  const scripts = examples.map((example, index) => writeScript(example, `check-${index}`));
  const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
  const options =
    "--noEmit --strict --exactOptionalPropertyTypes --skipLibCheck --allowImportingTsExtensions" +
    " --module nodenext --target es2022 --lib es2024 --types node";
  const result = spawnSync(process.execPath, [tsc, ...options.split(" "), ...scripts], {
    cwd: ROOT,
    encoding: "utf8",
  });
  for (const script of scripts) rmSync(script);
  expect(result.stdout).toBe("");
  expect(result.status).toBe(0);
}, 60_000);

it.each(usageExamples().map((example, index) => [index, example] as const))(
  "usage example %i runs and prints the results its comments promise",
  (index, example) => {
    expect(example.split("\n").filter((line) => line.trim() !== "").length).toBeLessThanOrEqual(20);
    const promised = [...example.matchAll(/console\.log\(.*\/\/ (.*)$/gm)].map((m) => m[1]);
    expect(promised.length).toBeGreaterThan(0);

    const dir = mkdtempSync(join(tmpdir(), "cruxx-readme-"));
    const script = writeScript(example, String(index));
    // Run from an empty folder, as a user would: tsx is named by its full path.
    const tsx = pathToFileURL(join(ROOT, "node_modules/tsx/dist/loader.mjs")).href;
    const result = spawnSync(process.execPath, ["--import", tsx, script], {
      cwd: dir,
      encoding: "utf8",
      timeout: 20_000,
    });
    rmSync(script);
    rmSync(dir, { recursive: true, force: true });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(result.stdout.trim().split("\n")).toEqual(promised);
  },
);

/** The example as a script in test/, importing the package's source in place of the package. */
function writeScript(example: string, name: string): string {
  const script = join(ROOT, "test", `.readme-example-${process.pid}-${name}.mts`);
  writeFileSync(
    script,
    example.replace('"cruxx-registry"', JSON.stringify(join(ROOT, "src/index.ts"))),
  );
  return script;
}
