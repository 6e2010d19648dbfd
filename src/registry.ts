/**
 * TaskRegistry: the seed's typed API (submit, get, update_status, checkpoint, pending,
 * load_checkpoint) over any RegistryBackend. Input is validated here, at the boundary;
 * stored documents are decoded here; everything below works with plain typed values.
 */
import type { RegistryBackend } from "./backend/port.js";
import {
  ConflictError,
  NotFoundError,
  RegistryError,
  SerializationError,
  ValidationError,
} from "./errors.js";
import { newTaskId, type TaskId } from "./ids.js";
import { decodeTask, validate, writeCrux, writeTask, writeTaskWithInput } from "./wire/codec.js";
import { JsonValueError, stringifyJson } from "./wire/json.js";
import {
  type Crux,
  cruxSchema,
  TASK_STATUSES,
  type Task,
  type TaskStatus,
  taskIdSchema,
} from "./wire/schema.js";

export interface TaskRegistryOptions {
  /** Read-modify-CAS cycles before a ConflictError. Default 3, as in the seed. */
  readonly casRetries?: number;
  /** Largest accepted `input`, in bytes of its JSON. Default 1 MiB. */
  readonly maxInputBytes?: number;
}

export interface PendingOptions {
  /** At most this many tasks, oldest first. Default: all. */
  readonly limit?: number;
}

const MAX_KIND_LENGTH = 255;

export class TaskRegistry {
  readonly #backend: RegistryBackend;
  readonly #casRetries: number;
  readonly #maxInputBytes: number;

  constructor(backend: RegistryBackend, options: TaskRegistryOptions = {}) {
    this.#backend = backend;
    this.#casRetries = positiveInteger(options.casRetries ?? 3, "$.casRetries");
    this.#maxInputBytes = positiveInteger(options.maxInputBytes ?? 1024 * 1024, "$.maxInputBytes");
  }

  /** Submit a new pending task; returns its id. Nothing is written if the input is invalid. */
  async submit(kind: string, input: unknown): Promise<TaskId> {
    checkKind(kind);
    const inputText = encodeInput(input, this.#maxInputBytes);
    const id = newTaskId();
    const data = writeTaskWithInput(
      { id, kind, status: "pending", checkpoint: null, attempts: 0 },
      inputText,
    );
    await this.#backend.put(id, { kind, status: "pending", data });
    return id;
  }

  /** The task, or a NotFoundError. */
  async get(id: string): Promise<Task> {
    const taskId = checkTaskId(id);
    const stored = await this.#backend.get(taskId);
    if (stored === undefined) throw new NotFoundError(taskId);
    return decodeStored(stored);
  }

  /** Set the status (any status may follow any other, as in the seed), with bounded CAS retries. */
  async updateStatus(id: string, status: TaskStatus): Promise<void> {
    if (!(TASK_STATUSES as readonly unknown[]).includes(status)) {
      throw new ValidationError("$.status", `expected one of ${TASK_STATUSES.join(", ")}`);
    }
    await this.#modify(checkTaskId(id), (task) => ({ ...task, status }));
  }

  /** Store a snapshot of `crux` as the task's checkpoint and count it in `attempts`. */
  async checkpoint(id: string, crux: Crux): Promise<void> {
    const taskId = checkTaskId(id);
    const snapshot = validate(cruxSchema, crux, "$.checkpoint");
    writeCrux(snapshot, "$.checkpoint"); // rejects non-JSON values inside the Crux before any write
    await this.#modify(taskId, (task) => ({
      ...task,
      checkpoint: snapshot,
      attempts: task.attempts + 1,
    }));
  }

  /** Pending tasks of `kind` (`""` = every kind), oldest first. */
  async pending(kind = "", options: PendingOptions = {}): Promise<Task[]> {
    if (typeof kind !== "string") throw new ValidationError("$.kind", "expected a string");
    const limit =
      options.limit === undefined ? undefined : positiveInteger(options.limit, "$.limit");
    const documents = await this.#backend.pending(kind, limit);
    return documents.map(decodeStored);
  }

  /** The task's checkpoint, or null; a NotFoundError when the task is missing. */
  async loadCheckpoint(id: string): Promise<Crux | null> {
    return (await this.get(id)).checkpoint;
  }

  /** Close the backend. */
  close(): Promise<void> {
    return this.#backend.close();
  }

  async #modify(id: TaskId, change: (task: Task) => Task): Promise<void> {
    for (let attempt = 0; attempt < this.#casRetries; attempt++) {
      const stored = await this.#backend.get(id);
      if (stored === undefined) throw new NotFoundError(id);
      const next = change(decodeStored(stored));
      const swapped = await this.#backend.cas(id, stored, {
        kind: next.kind,
        status: next.status,
        data: writeTask(next),
      });
      if (swapped) return;
    }
    throw new ConflictError(id);
  }
}

function decodeStored(document: string): Task {
  try {
    return decodeTask(document);
  } catch (error) {
    if (error instanceof RegistryError) {
      throw new SerializationError(error.message, { cause: error });
    }
    throw error;
  }
}

function checkTaskId(id: unknown): TaskId {
  return validate(taskIdSchema, id, "$.id");
}

function checkKind(kind: unknown): asserts kind is string {
  if (typeof kind !== "string" || kind.length === 0 || kind.length > MAX_KIND_LENGTH) {
    throw new ValidationError("$.kind", `expected a string of 1 to ${MAX_KIND_LENGTH} characters`);
  }
}

function positiveInteger(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new ValidationError(path, "expected a positive integer");
  }
  return value;
}

/** The input's JSON text; ValidationError (naming the path) if it is not JSON or too large. */
function encodeInput(input: unknown, maxBytes: number): string {
  let text: string;
  try {
    text = stringifyJson(input);
  } catch (error) {
    if (error instanceof JsonValueError) {
      throw new ValidationError(`$.input${error.path.slice(1)}`, error.message, { cause: error });
    }
    throw error;
  }
  const bytes = Buffer.byteLength(text);
  if (bytes > maxBytes) {
    throw new ValidationError("$.input", `input is ${bytes} bytes, over the limit of ${maxBytes}`);
  }
  return text;
}
