import { expect } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import type { TaskId } from "../../src/ids.js";
import type { TaskRegistry } from "../../src/registry.js";
import type { TaskState } from "../../src/task-state.js";

/**
 * Everything a backend stores, task by task in id order (documents with their appended steps
 * spliced in, and every scheduling column): a refused write must leave it equal.
 */
export async function storedTasks(backend: RegistryBackend): Promise<TaskState[]> {
  const states: TaskState[] = [];
  for (const id of await backend.list("")) {
    const state = await backend.read(id);
    if (state !== undefined) states.push(state);
  }
  return states;
}

/** The task as every reader gives it (get, inspect, loadCheckpoint), which must agree. */
export async function readBack(registry: TaskRegistry, id: TaskId) {
  const task = await registry.get(id);
  const record = await registry.inspect(id);
  const checkpoint = await registry.loadCheckpoint(id);
  expect(record.task).toEqual(task);
  expect(checkpoint).toEqual(task.checkpoint);
  return { task, record, checkpoint };
}
