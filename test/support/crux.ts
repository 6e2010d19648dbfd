import { newCruxId } from "../../src/ids.js";
import type { Crux, Step } from "../../src/wire/schema.js";

/** The seed's make_cruxx(): one finished `fetch` step. */
export function makeCrux(): Crux {
  const now = new Date().toISOString();
  return {
    id: newCruxId(),
    agent: "test",
    value: { Ok: "result" },
    steps: [{ ...stepRecord("fetch", 42n, "data"), started_at: now, duration_ms: 5 }],
    children: [],
    started_at: now,
    finished_at: now,
  };
}

/** A valid step record, for calling recordStep directly. */
export function stepRecord(name: string, inputHash: bigint, output: Step["output"]): Step {
  return {
    name,
    kind: "plain",
    status: "ok",
    confidence: 1,
    started_at: new Date().toISOString(),
    duration_ms: 0,
    input_hash: inputHash,
    content_hash: null,
    output,
    error: null,
    attempt: 1,
    events: [],
    metadata: {},
  };
}
