import { Worker } from "node:worker_threads";

// Several queens: each renews its row in `queens`, and one silent past
// QUEEN_GONE_MS is gone: its hives are judged by the age of their rows and its
// runs taken over. Renewed on the queen's own event loop, a queen that
// stalled past that (a long batch, a full collection of a 2 GB heap) was
// taken for gone while it lived and served its hives (the 10,000-hive join
// of docs/BENCHMARKS.md row 17 saw stalls of several seconds). So the
// renewal runs on a thread of its own with a connection of its own: a dead
// process stops it at once, as before, and a stall stops it only once the
// loop has not run for `stallMs`, a queen that wedged rather than paused.

export interface RenewalOptions {
	connectionString: string;
	queenId: string;
	/** How often the row is renewed. */
	everyMs: number;
	/** The queen's loop silent this long: the row is no longer renewed, and the others take the queen for gone. */
	stallMs: number;
	/** A renewal's bound: a server cut off by the network answers nothing. */
	queryTimeoutMs: number;
	log?: (msg: string, extra?: object) => void;
}

export interface Renewal {
	stop(): Promise<void>;
}

export interface RenewalData extends Omit<RenewalOptions, "log"> {
	/** A counter the queen's loop bumps: how the thread tells a live loop from a stalled one. */
	beat: Int32Array;
}

/** Starts renewing the queen's row on a thread of its own. */
export function startRenewal(o: RenewalOptions): Renewal {
	const beat = new Int32Array(new SharedArrayBuffer(4));
	const ticking = setInterval(() => Atomics.add(beat, 0, 1), Math.min(1000, o.everyMs));
	ticking.unref();
	const { log, ...rest } = o;
	const worker = new Worker(new URL("./renewal-thread.ts", import.meta.url), { workerData: { ...rest, beat } satisfies RenewalData });
	worker.unref();
	worker.on("message", (m: { msg: string; extra?: object }) => log?.(m.msg, m.extra));
	worker.on("error", (err) => log?.("the thread renewing this queen's row failed", { err: String(err) }));
	return {
		async stop() {
			clearInterval(ticking);
			await worker.terminate();
		},
	};
}
