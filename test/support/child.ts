import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";

/**
 * Start `script` (TypeScript, run through tsx) in a real child process, its configuration as
 * JSON in argv[2], every stdio stream piped.
 */
export function spawnScript(script: string, config: unknown): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ["--import", "tsx", script, JSON.stringify(config)], {
    stdio: ["pipe", "pipe", "pipe"],
  });
}

/** In a script started by spawnScript: its configuration, or exit 2 with a usage line. */
export function scriptConfig<T>(usage: string): T {
  const text = process.argv[2];
  if (text === undefined) {
    process.stderr.write(`usage: ${usage}\n`);
    process.exit(2);
  }
  return JSON.parse(text) as T;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Everything the child wrote to stderr. */
  readonly stderr: string;
}

export interface ScriptChild {
  readonly process: ChildProcessWithoutNullStreams;
  /**
   * Resolves with the rest of the first stdout line that is `prefix` or starts with
   * `prefix `; rejects, with the child's stderr, if it ends or prints none within `timeoutMs`.
   */
  line(prefix: string, timeoutMs?: number): Promise<string>;
  /** Settles once the child has exited and its output is all read. */
  readonly exited: Promise<Exit>;
}

/** Children started by startScript and not yet ended. */
const live = new Set<ChildProcessWithoutNullStreams>();

/** Kill every child still running: call it after each test, so none outlives a failure. */
export function killChildren(): void {
  for (const child of live) child.kill("SIGKILL");
  live.clear();
}

/** spawnScript, with its output collected and its lines awaitable. */
export function startScript(script: string, config: unknown): ScriptChild {
  const child = spawnScript(script, config);
  live.add(child);
  let stdout = "";
  let stderr = "";
  let closed = false;
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const check of [...listeners]) check();
  };
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    stdout += chunk;
    notify();
  });
  child.stderr.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<Exit>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      live.delete(child);
      closed = true;
      notify();
      resolve({ code, signal, stderr });
    });
  });
  const line = (prefix: string, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const stop = () => {
        listeners.delete(check);
        clearTimeout(timer);
      };
      const check = () => {
        const found = stdout.split("\n").find((l) => l === prefix || l.startsWith(`${prefix} `));
        if (found !== undefined) {
          stop();
          resolve(found.slice(prefix.length).trim());
        } else if (closed) {
          stop();
          reject(new Error(`child exited without printing "${prefix}"; stderr:\n${stderr}`));
        }
      };
      const timer = setTimeout(() => {
        stop();
        reject(
          new Error(`child printed no "${prefix}" within ${timeoutMs} ms; stderr:\n${stderr}`),
        );
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  return { process: child, line, exited };
}
