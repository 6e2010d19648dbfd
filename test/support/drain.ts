import type { TaskRegistry } from "../../src/registry.js";

/**
 * Run a worker of `kind` (its handler returns the task's input) until `count` tasks have
 * completed, then stop it. Returns the ids that completed and the errors of the worker's loop.
 */
export async function drain(
  registry: TaskRegistry,
  kind: string,
  count: number,
): Promise<{ completed: Set<string>; errors: unknown[] }> {
  const completed = new Set<string>();
  const errors: unknown[] = [];
  const all = new Promise<void>((resolve) => {
    registry.on("completed", ({ id }) => {
      completed.add(id);
      if (completed.size === count) resolve();
    });
  });
  const worker = registry.work(kind, async (task) => task.input, {
    concurrency: 4,
    pollIntervalMs: 5,
    onError: (error) => errors.push(error),
  });
  await all;
  await worker.stop();
  return { completed, errors };
}
