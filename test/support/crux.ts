import { newCruxId } from "../../src/ids.js";
import type { Crux } from "../../src/wire/schema.js";

/** The seed's make_cruxx(): one finished `fetch` step. */
export function makeCrux(): Crux {
  const now = new Date().toISOString();
  return {
    id: newCruxId(),
    agent: "test",
    value: { Ok: "result" },
    steps: [
      {
        name: "fetch",
        kind: "plain",
        status: "ok",
        confidence: 1.0,
        started_at: now,
        duration_ms: 5,
        input_hash: 42n,
        content_hash: null,
        output: "data",
        error: null,
        attempt: 1,
        events: [],
        metadata: {},
      },
    ],
    children: [],
    started_at: now,
    finished_at: now,
  };
}
