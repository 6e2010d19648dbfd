export { MemoryBackend } from "./backend/memory.js";
export type { RegistryBackend, TaskRow } from "./backend/port.js";
export {
  DURABILITY_MODES,
  type Durability,
  SqliteBackend,
  type SqliteBackendOptions,
} from "./backend/sqlite.js";
export * from "./errors.js";
export {
  type CruxId,
  isCruxId,
  isTaskId,
  newCruxId,
  newTaskId,
  type TaskId,
} from "./ids.js";
export { type OpenRegistryOptions, openRegistry } from "./open.js";
export { type PendingOptions, TaskRegistry, type TaskRegistryOptions } from "./registry.js";
export { decodeCrux, decodeTask, encodeCrux, encodeTask } from "./wire/codec.js";
export { contentHash, identityHash } from "./wire/hash.js";
export { F64, type Json, parseJson, stringifyJson } from "./wire/json.js";
export {
  BUDGET_KINDS,
  type BudgetKind,
  type Crux,
  type CruxErr,
  type CruxValue,
  STEP_KINDS,
  STEP_STATUSES,
  type Step,
  type StepKind,
  type StepStatus,
  TASK_STATUSES,
  type Task,
  type TaskStatus,
  type U64,
} from "./wire/schema.js";
