import { SqliteBackend, type SqliteBackendOptions } from "./backend/sqlite.js";
import { TaskRegistry, type TaskRegistryOptions } from "./registry.js";

export type OpenRegistryOptions = SqliteBackendOptions & TaskRegistryOptions;

/** A TaskRegistry on a SQLite file (created and migrated if needed) or `:memory:`. */
export async function openRegistry(
  path: string,
  options: OpenRegistryOptions = {},
): Promise<TaskRegistry> {
  const backend = await SqliteBackend.open(path, options);
  try {
    return new TaskRegistry(backend, options);
  } catch (error) {
    await backend.close();
    throw error;
  }
}
