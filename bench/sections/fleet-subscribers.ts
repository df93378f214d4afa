import { parentPort, Worker, workerData } from "node:worker_threads";

// The fleet section's subscribers, on a thread of their own: each event's
// arrival is stamped by a loop that does nothing else. Stamped on the bench's
// main loop, beside the simulator's thousands of hives, the arrivals carried
// that loop's backlog (at 5,000 hives it ran at 94 % of a core) and the
// spread between queens measured the bench, not the queens.

/** Arrival times at each queen, by event id: [queen][id] → ms (the thread's clock; only differences are used). */
export type Arrivals = Map<number, number>[];

interface Start {
	urls: string[];
	since: number;
}

/**
 * Subscribes to worker.spawned / worker.exited at every queen from `since`.
 * `complete()`: has every event seen at one queen been seen at all of them;
 * `stop()` ends the streams and returns the arrivals.
 */
export function subscribeAll(urls: string[], since: number): { complete(): Promise<boolean>; stop(): Promise<Arrivals> } {
	const w = new Worker(new URL(import.meta.url), { workerData: { urls, since } satisfies Start });
	let stopped: Promise<Arrivals> | null = null;
	// One question at a time: each waits for its answer before the next is asked.
	let pending: { resolve(v: unknown): void; reject(e: Error): void } | null = null;
	w.on("message", (v) => pending?.resolve(v));
	w.on("error", (e) => pending?.reject(e));
	const ask = <T>(what: "complete" | "stop") =>
		new Promise<T>((resolve, reject) => {
			pending = { resolve: resolve as (v: unknown) => void, reject };
			w.postMessage(what);
		});
	return {
		complete: () => ask<boolean>("complete"),
		// Once: a second call (the section's clean-up) gets the same answer.
		stop: () => {
			stopped ??= ask<[number, number][][]>("stop").then(async (got) => {
				await w.terminate();
				return got.map((entries) => new Map(entries));
			});
			return stopped;
		},
	};
}

/** One queen's stream: the first arrival of each event id. */
async function follow(url: string, since: number, seen: Map<number, number>, stop: AbortSignal): Promise<void> {
	const res = await fetch(`${url}/v1/events?types=worker.spawned,worker.exited&since=${since}`, { signal: stop }).catch(() => null);
	if (!res?.body) return;
	const dec = new TextDecoder();
	let buf = "";
	try {
		for await (const chunk of res.body) {
			const at = performance.now();
			buf += dec.decode(chunk as Uint8Array, { stream: true });
			for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
				const frame = buf.slice(0, i);
				buf = buf.slice(i + 2);
				const id = /^id: (\d+)$/m.exec(frame);
				if (id && /^event: worker\.(spawned|exited)$/m.test(frame) && !seen.has(Number(id[1]))) seen.set(Number(id[1]), at);
			}
		}
	} catch {
		// Aborted at the end.
	}
}

if (parentPort && workerData && (workerData as Start).urls) {
	const { urls, since } = workerData as Start;
	const ac = new AbortController();
	const seen = urls.map(() => new Map<number, number>());
	for (const [i, u] of urls.entries()) void follow(u, since, seen[i]!, ac.signal);
	parentPort.on("message", (what: "complete" | "stop") => {
		if (what === "complete") {
			const ids = new Set<number>();
			for (const m of seen) for (const k of m.keys()) ids.add(k);
			parentPort!.postMessage(seen.every((m) => m.size === ids.size));
			return;
		}
		ac.abort();
		parentPort!.postMessage(seen.map((m) => [...m]));
	});
}
