/**
 * `npm run bench` — every workload against its baselines, measured in this same run.
 *
 *   npm run bench                  the full run (about 3 minutes on 2 idle cores)
 *   npm run bench -- --quick       a smaller version in seconds: a smoke check, not a measurement
 *   npm run bench -- --only W1,W5  only some workloads
 *
 * Prints one table and writes it, with the machine it ran on, to bench/results/latest.json.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { arch, cpus, freemem, loadavg, platform, release, tmpdir, totalmem, type } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sqliteVersion } from "./raw.js";
import { type BenchContext, cleanUpEverything, errorRow, fmt, fmtRatio, type Row } from "./util.js";
import { runBlocking } from "./workloads/blocking.js";
import { runClaim } from "./workloads/claim.js";
import { runLifecycle } from "./workloads/lifecycle.js";
import { runPickup } from "./workloads/pickup.js";
import { runSteps1000 } from "./workloads/steps.js";
import { runSubmit } from "./workloads/submit.js";

const HERE = dirname(fileURLToPath(import.meta.url));

interface Group {
  readonly ids: readonly string[];
  readonly name: string;
  readonly run: (ctx: BenchContext) => Promise<Row[]>;
}

const GROUPS: readonly Group[] = [
  { ids: ["W1", "W2", "W3"], name: "submit", run: runSubmit },
  { ids: ["W4"], name: "lifecycle", run: runLifecycle },
  { ids: ["W5"], name: "claim latency", run: runClaim },
  { ids: ["W6"], name: "durable steps", run: runSteps1000 },
  { ids: ["W7"], name: "pickup latency", run: runPickup },
  { ids: ["W8"], name: "event-loop blocking", run: runBlocking },
];

interface Args {
  readonly quick: boolean;
  readonly only: ReadonlySet<string> | null;
  readonly out: string;
}

function parseArgs(argv: readonly string[]): Args {
  let quick = false;
  let only: Set<string> | null = null;
  let out = join(HERE, "results", "latest.json");
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--quick") quick = true;
    else if (arg === "--only") only = new Set((argv[++i] ?? "").toUpperCase().split(","));
    else if (arg.startsWith("--only=")) only = new Set(arg.slice(7).toUpperCase().split(","));
    else if (arg === "--out") out = argv[++i] ?? out;
    else if (arg === "--help" || arg === "-h") {
      console.log("usage: npm run bench -- [--quick] [--only W1,W4] [--out path.json]");
      process.exit(0);
    } else {
      console.error(`unknown argument ${arg}`);
      process.exit(2);
    }
  }
  return { quick, only, out };
}

function packageVersion(name: string): string {
  try {
    const path = join(HERE, "..", "node_modules", name, "package.json");
    return (JSON.parse(readFileSync(path, "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

/** The code measured: the commit, and whether src/ or migrations/ had uncommitted changes. */
function source(): { commit: string; uncommittedChanges: string[] } {
  try {
    const git = (...args: string[]) =>
      execFileSync("git", args, { cwd: join(HERE, ".."), encoding: "utf8" }).trim();
    const changes = git("status", "--porcelain", "--", "src", "migrations");
    return {
      commit: git("rev-parse", "--short", "HEAD"),
      uncommittedChanges: changes === "" ? [] : changes.split("\n").map((l) => l.trim()),
    };
  } catch {
    return { commit: "unknown", uncommittedChanges: [] };
  }
}

function machine() {
  const cpuList = cpus();
  return {
    os: `${type()} ${release()} (${platform()} ${arch()})`,
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model ?? "unknown",
    memoryGiB: Number((totalmem() / 1024 ** 3).toFixed(1)),
    freeMemoryGiB: Number((freemem() / 1024 ** 3).toFixed(1)),
    loadAverage: loadavg().map((l) => Number(l.toFixed(2))),
    node: process.version,
    sqlite: sqliteVersion(),
    betterSqlite3: packageVersion("better-sqlite3"),
    baselines: {
      plainjob: packageVersion("plainjob"),
      liteque: packageVersion("liteque"),
      "@langchain/langgraph-checkpoint-sqlite": packageVersion(
        "@langchain/langgraph-checkpoint-sqlite",
      ),
    },
    tmpdir: tmpdir(),
  };
}

function pad(text: string, width: number, right = false): string {
  const length = [...text].length;
  if (length >= width) return text;
  const fill = " ".repeat(width - length);
  return right ? fill + text : text + fill;
}

function table(rows: readonly Row[]): string {
  const header = ["workload", "this project", "baseline", "ratio", "target", "met?"];
  const lines = rows.map((r) => [
    `${r.id} ${r.workload} [${r.durability}]`,
    fmt(r.value, r.unit),
    r.baseline === null ? "—" : fmt(r.baseline, r.unit),
    fmtRatio(r.ratio),
    r.target,
    r.met === null ? "info" : r.met ? "yes" : "NO",
  ]);
  const widths = header.map((h, i) =>
    Math.max([...h].length, ...lines.map((l) => [...(l[i] as string)].length)),
  );
  const right = [false, true, true, true, false, false];
  const format = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => pad(c, widths[i] as number, right[i])).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (right[i] ? `${"-".repeat(w + 1)}:` : "-".repeat(w + 2))).join("|")}|`;
  return [format(header), rule, ...lines.map(format)].join("\n");
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      cleanUpEverything();
      process.exit(130);
    });
  }
  process.on("exit", cleanUpEverything);

  const ctx: BenchContext = {
    quick: args.quick,
    wants: (id) => args.only === null || args.only.has(id),
    log: (message) => process.stderr.write(`  ${message}\n`),
  };
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const info = machine();
  const code = source();
  process.stderr.write(
    `cruxx-registry bench (${args.quick ? "quick" : "full"}) on ${info.os}, ${info.cpus}× ${info.cpuModel}, node ${info.node}, SQLite ${info.sqlite}, load ${info.loadAverage.join(" ")}; code ${code.commit}${code.uncommittedChanges.length > 0 ? " + uncommitted changes in src/" : ""}\n`,
  );
  const rows: Row[] = [];
  const timings: Record<string, number> = {};
  for (const group of GROUPS) {
    if (args.only !== null && !group.ids.some((id) => args.only?.has(id))) continue;
    process.stderr.write(`${group.ids.join(", ")} ${group.name}…\n`);
    const t = performance.now();
    try {
      const groupRows = await group.run(ctx);
      rows.push(...groupRows.filter((r) => args.only === null || args.only.has(r.id)));
    } catch (error) {
      process.stderr.write(
        `  ${group.name} failed: ${error instanceof Error ? error.stack : error}\n`,
      );
      for (const id of group.ids) rows.push(errorRow(id, group.name, error));
    }
    const groupMs = Math.round(performance.now() - t);
    timings[group.name] = groupMs;
    process.stderr.write(`  (${(groupMs / 1000).toFixed(1)} s)\n`);
  }
  const durationMs = Math.round(performance.now() - started);

  console.log(table(rows));
  const missed = rows.filter((r) => r.met === false);
  console.log(
    `\n${rows.filter((r) => r.met === true).length} met, ${missed.length} missed, ${rows.filter((r) => r.met === null).length} informational; ${(durationMs / 1000).toFixed(1)} s${args.quick ? " (quick: a smoke check, figures are not meaningful)" : ""}`,
  );

  mkdirSync(dirname(args.out), { recursive: true });
  const result = {
    mode: args.quick ? "quick" : "full",
    startedAt,
    durationMs,
    groupDurationsMs: timings,
    source: code,
    machine: info,
    rows,
  };
  writeFileSync(args.out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${args.out}`);
}

await main();
