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
