import { Readable } from "node:stream";
import { LOG_WINDOW, type LogsQuery } from "@apiary/protocol";
import { PlacementError } from "./placement/placer.ts";
import type { HiveCommander } from "./hive-commands.ts";
import type { CommandFlow } from "./socket.ts";

// A worker's log relayed from its hive to one HTTP reader. The reader sets the
// pace by credit: the hive may send LOG_WINDOW bytes beyond what the reader
// has taken, and is granted more as it takes them, so the queen holds at most
// LOG_WINDOW for one reader whatever the links' speeds (bytes in flight count
// against the credit, unlike a pause that arrives after them). A hive that
// sends past its credit is cancelled and the response cut. Nothing here emits
// an 'error' before the stream is handed to the response: a refusal before the
// first byte rejects (a 4xx/5xx), one after it ends the response early.

/** Reads that free this much of the window grant it again (fewer credit messages than one a chunk). */
const REGRANT = LOG_WINDOW / 4;

/** The stream of the worker's log, once the hive sent its first byte or said it has none; rejects with the hive's refusal. */
export function relayLogs(
	sockets: Pick<HiveCommander, "command">,
	hiveId: string,
	workerId: string,
	query: LogsQuery,
	o: { signal?: AbortSignal; auth?: string } = {},
): Promise<Readable> {
	const ac = new AbortController();
	let flow: CommandFlow | null = null;
	let started = false;
	let received = 0;
	let granted = LOG_WINDOW;
	const out = new Readable({
		highWaterMark: REGRANT,
		read() {
			// Called as the reader takes bytes: what it took is credited again (all of it once the buffer is empty).
			const taken = received - out.readableLength;
			if (taken + LOG_WINDOW - granted >= REGRANT || (out.readableLength === 0 && taken + LOG_WINDOW > granted)) {
				granted = taken + LOG_WINDOW;
				flow?.credit(granted);
			}
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
						received += b.length;
						if (received > granted) {
							out.destroy(new Error(`hive ${hiveId} sent ${received - granted} bytes past its credit: cut off`));
							return;
						}
						out.push(b);
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
