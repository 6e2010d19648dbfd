/**
 * What chaos.test.ts and its child processes (chaos-worker.ts) share: the task shape, the
 * values the steps return, and the log lines the children write.
 *
 * Log lines, one event each, appended by the process that saw it:
 *   exec <taskId> <ordinal> <pid> <run>       a step function started running (live, not replayed)
 *   persisted <taskId> <ordinal> <pid> <run>  ctx.step resolved after running the step: it is stored
 *   replayed <taskId> <ordinal> <pid> <run> <storedRun>
 *                                             ctx.step resolved without running the step, with the
 *                                             result run <storedRun> stored
 *   completed <taskId> <pid>                  the registry's `completed` event: complete() is stored
 *   reclaimed <taskId> <pid> <at> <previousOwner>
 *                                             this process's sweep took back, at epoch ms <at>, a
 *                                             task whose lease ended
 * `run` is the task's claim count when the run began (ClaimedTask.runs); every claim adds one,
 * so run numbers order the runs of a task. A step's output records the run and process that ran
 * it live, so the stored checkpoint says which run's result it kept.
 */

export const CHAOS_KIND = "chaos";

export interface ChaosInput {
  readonly index: number;
  readonly steps: number;
}

export interface StepOutput {
  readonly v: number;
  /** Who ran the step live: lets the parent tie the stored step to its `exec` line. */
  readonly pid: number;
  readonly run: number;
}

export interface ChaosResult {
  readonly index: number;
  readonly steps: number;
  readonly total: number;
}

export function stepValue(index: number, ordinal: number): number {
  return index * 100 + ordinal * ordinal + 1;
}

/** The handler's result: the sum of its steps' values, whether run live or replayed. */
export function expectedResult({ index, steps }: ChaosInput): ChaosResult {
  let total = 0;
  for (let ordinal = 0; ordinal < steps; ordinal++) total += stepValue(index, ordinal);
  return { index, steps, total };
}

export interface StepLine {
  readonly event: "exec" | "persisted";
  readonly taskId: string;
  readonly ordinal: number;
  readonly pid: number;
  readonly run: number;
}

export interface ReplayedLine {
  readonly event: "replayed";
  readonly taskId: string;
  readonly ordinal: number;
  readonly pid: number;
  readonly run: number;
  /** The run whose stored result the replay returned. */
  readonly storedRun: number;
}

export interface CompletedLine {
  readonly event: "completed";
  readonly taskId: string;
  readonly pid: number;
}

export interface ReclaimedLine {
  readonly event: "reclaimed";
  readonly taskId: string;
  readonly pid: number;
  /** Epoch ms. */
  readonly at: number;
  readonly previousOwner: string;
}

export type LogLine = StepLine | ReplayedLine | CompletedLine | ReclaimedLine;

export interface ParsedLog {
  readonly lines: LogLine[];
  /** A last line without its newline (a write cut short); never seen in practice. */
  readonly torn: string | null;
}

/** Parse one child's log; throws on a malformed complete line. */
export function parseLog(text: string): ParsedLog {
  const parts = text.split("\n");
  const last = parts.pop() as string; // "" when the text ends with a newline
  const lines = parts.map((line): LogLine => {
    const fields = line.split(" ");
    const [event, taskId] = fields;
    const numbers = fields.slice(2).map(Number);
    if (
      (event === "exec" || event === "persisted") &&
      taskId !== undefined &&
      numbers.length === 3 &&
      numbers.every(Number.isSafeInteger)
    ) {
      const [ordinal, pid, run] = numbers as [number, number, number];
      return { event, taskId, ordinal, pid, run };
    }
    if (
      event === "replayed" &&
      taskId !== undefined &&
      numbers.length === 4 &&
      numbers.every(Number.isSafeInteger)
    ) {
      const [ordinal, pid, run, storedRun] = numbers as [number, number, number, number];
      return { event, taskId, ordinal, pid, run, storedRun };
    }
    if (event === "completed" && taskId !== undefined && numbers.length === 1) {
      return { event, taskId, pid: numbers[0] as number };
    }
    const [, , pid, at, previousOwner] = fields;
    if (event === "reclaimed" && taskId !== undefined && fields.length === 5) {
      return {
        event,
        taskId,
        pid: Number(pid),
        at: Number(at),
        previousOwner: previousOwner as string,
      };
    }
    throw new Error(`malformed log line: ${JSON.stringify(line)}`);
  });
  return { lines, torn: last === "" ? null : last };
}
