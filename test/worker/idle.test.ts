/**
 * The idle wait on its own, with a stand-in registry: what ends a sleep, busy or not, what a
 * change feed adds, and that a sleep leaves no timer, listener or watch behind.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryBackend } from "../../src/backend/memory.js";
import type { ChangeFeed } from "../../src/backend/port.js";
import { TaskRegistry } from "../../src/registry.js";
import { Wakeup } from "../../src/wakeup.js";
import { type IdleHost, IdleWait } from "../../src/worker/idle.js";
import { Harness, nextEvent } from "./helpers.js";

const POLL_MS = 60_000;
const CHANGE_POLL_MS = 5;

/** A change feed whose version the test moves, counting reads and watching listeners. */
class TestFeed implements ChangeFeed {
  current = 0;
  reads = 0;
  failWith: Error | undefined;
  readonly listeners = new Set<() => void>();

  async version(): Promise<number> {
    this.reads++;
    if (this.failWith) throw this.failWith;
    return this.current;
  }

  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Another connection commits; `watched` says whether the watch tells. */
  commit(watched: boolean): void {
    this.current++;
    if (watched) for (const listener of [...this.listeners]) listener();
  }
}

function idle(changes?: ChangeFeed, nextWakeAt?: number) {
  const host: IdleHost = {
    wakeup: new Wakeup(),
    changes,
    now: () => Date.now(),
    nextWakeAt: async () => nextWakeAt,
  };
  const local = new Wakeup();
  const wait = new IdleWait(
    host,
    [],
    { pollIntervalMs: POLL_MS, changePollMs: CHANGE_POLL_MS },
    local,
  );
  return { host, local, wait };
}

/** The sleep's outcome so far: pending, resolved or the rejection. */
function track(sleep: Promise<void>): { state: "pending" | "resolved" | Error } {
  const outcome: { state: "pending" | "resolved" | Error } = { state: "pending" };
  sleep.then(
    () => {
      outcome.state = "resolved";
    },
    (error: Error) => {
      outcome.state = error;
    },
  );
  return outcome;
}

describe("IdleWait", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("busy, it ends when a run ends or the poll interval passes, not for new work", async () => {
    const feed = new TestFeed();
    const { host, local, wait } = idle(feed);
    const look = await wait.look();
    const sleep = track(wait.sleep(look, true));
    host.wakeup.notify();
    feed.commit(true);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sleep.state).toBe("pending");
    local.notify();
    await vi.advanceTimersByTimeAsync(0);
    expect(sleep.state).toBe("resolved");
    expect(feed.reads).toBe(1); // look() only

    const timedOut = track(wait.sleep(await wait.look(), true));
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(timedOut.state).toBe("resolved");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("free, it ends for work submitted here, even submitted before it began", async () => {
    const { host, wait } = idle();
    const sleep = track(wait.sleep(await wait.look(), false));
    await vi.advanceTimersByTimeAsync(10);
    host.wakeup.notify();
    await vi.advanceTimersByTimeAsync(0);
    expect(sleep.state).toBe("resolved");

    host.wakeup.notify(); // nobody listening: kept for the next sleep
    const next = track(wait.sleep(await wait.look(), false));
    await vi.advanceTimersByTimeAsync(0);
    expect(next.state).toBe("resolved");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("free, it ends when the next task falls due, not before", async () => {
    const { wait } = idle(undefined, Date.now() + 300);
    const sleep = track(wait.sleep(await wait.look(), false));
    await vi.advanceTimersByTimeAsync(299);
    expect(sleep.state).toBe("pending");
    await vi.advanceTimersByTimeAsync(1);
    expect(sleep.state).toBe("resolved");
  });

  it("with a change feed, a commit elsewhere ends it: at once through the watch, or at the next poll", async () => {
    const feed = new TestFeed();
    const { wait } = idle(feed);
    const watched = track(wait.sleep(await wait.look(), false));
    await vi.advanceTimersByTimeAsync(1);
    expect(feed.listeners.size).toBe(1);
    const reads = feed.reads;
    feed.commit(true);
    await vi.advanceTimersByTimeAsync(0);
    expect(watched.state).toBe("resolved");
    expect(feed.reads).toBe(reads + 1);
    expect(feed.listeners.size).toBe(0);

    const polled = track(wait.sleep(await wait.look(), false));
    await vi.advanceTimersByTimeAsync(CHANGE_POLL_MS * 3);
    expect(polled.state).toBe("pending");
    feed.commit(false); // the watch missed it
    await vi.advanceTimersByTimeAsync(CHANGE_POLL_MS);
    expect(polled.state).toBe("resolved");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("a commit between look() and the sleep ends it at once", async () => {
    const feed = new TestFeed();
    const { wait } = idle(feed);
    const look = await wait.look();
    feed.commit(false);
    const sleep = track(wait.sleep(look, false));
    await vi.advanceTimersByTimeAsync(0);
    expect(sleep.state).toBe("resolved");
  });

  it("a version read that fails ends the sleep with its error, leaving no watch behind", async () => {
    const feed = new TestFeed();
    const { wait } = idle(feed);
    const sleep = track(wait.sleep(await wait.look(), false));
    await vi.advanceTimersByTimeAsync(1);
    feed.failWith = new Error("disk gone");
    await vi.advanceTimersByTimeAsync(CHANGE_POLL_MS);
    expect(sleep.state).toBeInstanceOf(Error);
    expect((sleep.state as Error).message).toBe("disk gone");
    expect(feed.listeners.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("a busy sleep after a watching one does not read the feed, even if a read was still on its way", async () => {
    const feed = new TestFeed();
    let release: () => void = () => undefined;
    const slow = new Promise<void>((resolve) => {
      release = resolve;
    });
    const version = feed.version.bind(feed);
    const { local, wait } = idle(feed);
    const watching = track(wait.sleep(await wait.look(), false));
    await vi.advanceTimersByTimeAsync(1); // asleep, watching
    feed.version = async () => {
      await slow;
      return version();
    };
    feed.commit(true); // starts a read that waits for `slow`
    local.notify();
    await vi.advanceTimersByTimeAsync(0);
    expect(watching.state).toBe("resolved");
    feed.version = version;
    const busy = track(wait.sleep(await wait.look(), true));
    const reads = feed.reads;
    release();
    feed.commit(true);
    await vi.advanceTimersByTimeAsync(CHANGE_POLL_MS * 10);
    expect(busy.state).toBe("pending");
    expect(feed.reads).toBe(reads + 1); // the read that was on its way, and no other
    expect(vi.getTimerCount()).toBe(1); // the poll interval's
  });

  it("without a change feed, it reads nothing and sets one timer: the poll interval's", async () => {
    const { wait } = idle();
    const sleep = track(wait.sleep(await wait.look(), false));
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(POLL_MS);
    expect(sleep.state).toBe("resolved");
  });
});

describe("a worker's idle rounds", () => {
  const h = new Harness();
  afterEach(async () => {
    vi.restoreAllMocks();
    vi.unstubAllGlobals();
    await h.cleanup();
  });

  it("build no AbortController or AbortSignal", async () => {
    const registry = h.track(new TaskRegistry(new MemoryBackend()));
    const any = vi.spyOn(AbortSignal, "any");
    const timeout = vi.spyOn(AbortSignal, "timeout");
    let controllers = 0;
    vi.stubGlobal(
      "AbortController",
      class extends AbortController {
        constructor() {
          super();
          controllers++;
        }
      },
    );
    h.work(registry, "job", async () => "ok");
    // Each task is submitted once the worker went idle: one idle round per task.
    for (let i = 0; i < 20; i++) {
      const completed = nextEvent(registry, "completed");
      await registry.submit("job", i);
      await completed;
    }
    expect(any).not.toHaveBeenCalled();
    expect(timeout).not.toHaveBeenCalled();
    expect(controllers).toBe(0);
    expect(h.errors).toEqual([]);
  });
});
