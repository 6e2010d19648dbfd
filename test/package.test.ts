/** The package as published: the build's output is where the exports map says, with types. */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

it("builds to the files the exports map names, and the built entry point works", {
  timeout: 120_000,
}, () => {
  // Inside the project, so the built files resolve their dependencies as installed ones do.
  const out = mkdtempSync(join(ROOT, "node_modules", ".cruxx-build-"));
  execFileSync(
    process.execPath,
    [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json", "--outDir", out],
    { cwd: ROOT, stdio: "pipe" },
  );
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    main: string;
    types: string;
    exports: { ".": { types: string; import: string } };
  };
  const built = (path: string) => join(out, path.replace(/^\.\/dist\//, ""));
  for (const path of [pkg.main, pkg.types, pkg.exports["."].types, pkg.exports["."].import]) {
    expect(existsSync(built(path)), path).toBe(true);
  }
  // A plain Node process, not the test runner's resolver, loads the entry point.
  const script = `
    const { openRegistry } = await import(${JSON.stringify(pathToFileURL(built(pkg.exports["."].import)).href)});
    const registry = await openRegistry(":memory:");
    const id = await registry.submit("built", { ok: true });
    console.log(JSON.stringify((await registry.get(id)).input));
    await registry.close();`;
  const printed = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    cwd: ROOT,
    encoding: "utf8",
  });
  expect(printed.trim()).toBe('{"ok":true}');
  rmSync(out, { recursive: true, force: true });
});
