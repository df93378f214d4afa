import { Readable } from "node:stream";
import type { LogsQuery } from "@apiary/protocol";
import { PlacementError } from "./placement/placer.ts";
import type { HiveCommander } from "./hive-commands.ts";
import type { CommandFlow } from "./socket.ts";

// A worker's log relayed from its hive to one HTTP reader. The reader sets the
// pace: past HIGH_WATER buffered the hive is told to pause, and resumed when
// the reader drains it. A hive that keeps sending past HARD_CAP (it ignored
// the pause) is cancelled and the response cut, so one reader costs the queen
// at most HARD_CAP whatever the hive or the reader do. Nothing here emits an
// 'error' before the stream is handed to the response: a refusal before the
// first byte rejects (a 4xx/5xx), one after it ends the response early.

const HIGH_WATER = 1 << 20;
const HARD_CAP = 8 << 20;

/** The stream of the worker's log, once the hive sent its first byte or said it has none; rejects with the hive's refusal. */
export function relayLogs(
	sockets: Pick<HiveCommander, "command">,
	hiveId: string,
	workerId: string,
	query: LogsQuery,
	o: { signal?: AbortSignal; highWater?: number; hardCap?: number; auth?: string } = {},
): Promise<Readable> {
	const highWater = o.highWater ?? HIGH_WATER;
	const hardCap = o.hardCap ?? HARD_CAP;
	const ac = new AbortController();
	let flow: CommandFlow | null = null;
	let paused = false;
	let started = false;
	const out = new Readable({
		highWaterMark: highWater,
		read() {
			if (!paused) return;
			paused = false;
			flow?.resume();
		},
		destroy(err, cb) {
			// The reader went away (or the relay was cut): the hive stops reading the file.
			ac.abort();
			cb(err);
		},
	});
	// Whoever consumes the stream handles its errors; until then (and after) none may reach the process.
	out.on("error", () => {});
	// The reader went away, before the first byte or after: the relay (and the hive's reading) stops.
	o.signal?.addEventListener("abort", () => out.destroy(), { once: true });
	return new Promise<Readable>((resolve, reject) => {
		const begin = () => {
			if (started) return;
			started = true;
			resolve(out);
		};
		sockets
			.command(
				hiveId,
				{ op: "logs", workerId, query },
				{
					signal: ac.signal,
					auth: o.auth,
					flow: (f) => {
						flow = f;
					},
					onChunk: (b) => {
						if (out.destroyed) return;
						if (out.readableLength + b.length > hardCap) {
							out.destroy(new Error(`hive ${hiveId} sent past the relay's ${hardCap}-byte buffer: cut off`));
							return;
						}
						if (!out.push(b) && !paused) {
							paused = true;
							flow?.pause();
						}
						begin();
					},
				},
			)
			.then((r) => {
				if (!started) {
					if (r.status === 200) {
						out.push(null); // an empty log
						begin();
					} else {
						out.destroy();
						reject(new PlacementError(r.status === 499 ? 503 : r.status, `hive ${hiveId}: ${r.error ?? `status ${r.status}`}`));
					}
					return;
				}
				if (out.destroyed) return;
				if (r.status === 200) out.push(null);
				// Mid-relay (the hive dropped, or failed): the response ends early; the reader sees it cut.
				else out.destroy(new Error(`hive ${hiveId}: ${r.error ?? `status ${r.status}`}`));
			});
	});
}
