import { describe, expect, it } from "vitest";
import { LazyAbortController } from "../../src/worker/lazy-abort.js";

describe("LazyAbortController", () => {
  it("hands out a signal born aborted, with the reason, when aborted before it was asked for", () => {
    const controller = new LazyAbortController();
    controller.abort("first");
    controller.abort("second");
    expect(controller.aborted).toBe(true);
    expect(controller.signal.aborted).toBe(true);
    expect(controller.signal.reason).toBe("first");
  });

  it("aborts a signal already handed out, once, with the first reason", () => {
    const controller = new LazyAbortController();
    const signal = controller.signal;
    const seen: unknown[] = [];
    signal.addEventListener("abort", () => seen.push(signal.reason));
    expect(controller.aborted).toBe(false);
    controller.abort("first");
    controller.abort("second");
    expect(seen).toEqual(["first"]);
    expect(controller.reason).toBe("first");
    expect(controller.signal).toBe(signal);
  });
});
