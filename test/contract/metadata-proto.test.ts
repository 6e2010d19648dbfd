/**
 * A step's metadata keeps a "__proto__" key, which z.record dropped (assigning it sets the
 * prototype): a document the Rust crate wrote re-encodes byte for byte, and recordStep stores
 * the key, on every backend.
 */
import { describe, expect, it } from "vitest";
import { newCruxId, newTaskId } from "../../src/ids.js";
import { TaskRegistry } from "../../src/registry.js";
import { decodeCrux, decodeTask, encodeCrux, encodeTask } from "../../src/wire/codec.js";
import { identityHash } from "../../src/wire/hash.js";
import type { Step } from "../../src/wire/schema.js";
import { BACKENDS } from "../support/backends.js";
import { stepRecord } from "../support/crux.js";

const METADATA = '{"__proto__":{"x":1},"b":2}';

/** A Crux as serde_json writes it, one step with metadata holding "__proto__". */
function rustCrux(): string {
  const step = `{"name":"s","kind":"plain","status":"ok","confidence":1.0,"started_at":"2024-01-01T00:00:00Z","duration_ms":1,"input_hash":1,"content_hash":null,"output":null,"error":null,"attempt":0,"metadata":${METADATA}}`;
  return `{"id":"${newCruxId()}","agent":"a","value":{"Ok":null},"steps":[${step}],"children":[],"started_at":"2024-01-01T00:00:00Z","finished_at":null}`;
}

it("a Rust-written document with a __proto__ metadata key re-encodes byte for byte", () => {
  const crux = rustCrux();
  expect(encodeCrux(decodeCrux(crux))).toBe(crux);
  const task = `{"id":"${newTaskId()}","kind":"k","status":"done","input":null,"checkpoint":${crux},"attempts":1}`;
  const decoded = decodeTask(task);
  expect(encodeTask(decoded)).toBe(task);
  const metadata = decoded.checkpoint?.steps[0]?.metadata ?? {};
  expect(Object.getPrototypeOf(metadata)).toBe(Object.prototype);
  expect(Object.keys(metadata)).toEqual(["__proto__", "b"]);
});

it("metadata that is not a plain object is VALIDATION at its path", () => {
  for (const metadata of [[], "m", new Map()]) {
    const step = { ...stepRecord("s", 1n, null), metadata } as unknown as Step;
    const crux = { ...JSON.parse(rustCrux()), steps: [step] };
    expect(() => encodeCrux(crux)).toThrow(
      expect.objectContaining({ code: "VALIDATION", path: "$.steps[0].metadata" }),
    );
  }
});

describe.each(BACKENDS)("recordStep on $name", (factory) => {
  it("keeps a __proto__ metadata key", async () => {
    const registry = new TaskRegistry(await factory.open());
    try {
      const id = await registry.submit("k", null);
      const claimed = await registry.claim("k", { owner: "w" });
      const step = {
        ...stepRecord("s", identityHash("s", 0), null),
        metadata: JSON.parse(METADATA),
      };
      await registry.recordStep(id, claimed?.lease.token ?? "", 0, step);
      const stored = (await registry.get(id)).checkpoint?.steps[0]?.metadata;
      expect(JSON.stringify(stored)).toBe(METADATA);
      expect(encodeTask(await registry.get(id))).toContain(`"metadata":${METADATA}}`);
    } finally {
      await registry.close();
    }
  });
});
