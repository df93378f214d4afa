import { statSync } from "node:fs";
import { open } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { LogsQuery } from "@apiary/protocol";
import type { Hive } from "./hive.ts";
import { lastLines, lastLinesOf } from "./log-cap.ts";

// Reading a worker's log, for the hive's logs route and the queen's relayed
// logs alike: the last N lines, a byte range, or all of it, then followed
// while the worker runs.

/** A worker's output: the last N lines, or from a byte offset of the current file, or all of it (rotated part first); then followed if asked. */
export async function* logStream(hive: Hive, id: string, q: LogsQuery, follow: boolean, signal: AbortSignal): AsyncGenerator<Buffer> {
	const path = hive.logPath(id);
	const more = follow ? () => hive.get(id)?.state === "running" : null;
	if (q.tail !== undefined) {
		const n = Number(q.tail);
		const from = sizeOf(path);
		const recent = Buffer.concat([lastLines(`${path}.1`, n, TAIL_MAX_BYTES), lastLines(path, n, TAIL_MAX_BYTES, from)]);
		const lines = lastLinesOf(recent, n);
		if (lines.length > 0) yield lines;
		// Following: on from where the lines were taken.
		if (more) yield* tailFile(path, from, more, signal);
		return;
	}
	if (q.offset === undefined) {
		const rotated = await open(`${path}.1`, "r").catch(() => null); // never rotated: nothing older
		if (rotated) {
			try {
				for await (const chunk of rotated.createReadStream({ autoClose: false })) yield chunk as Buffer;
			} finally {
				await rotated.close();
			}
		}
	}
	yield* tailFile(path, Number(q.offset ?? 0), more, signal);
}

const TAIL_MAX_BYTES = 4 * 2 ** 20;

function sizeOf(path: string): number {
	try {
		return statSync(path).size;
	} catch {
		// No log yet: follow from its start.
		return 0;
	}
}

/** Yields the file from `offset`; while `more()` says the writer is alive, waits for growth like `tail -f`. */
async function* tailFile(path: string, offset: number, more: (() => boolean) | null, signal: AbortSignal): AsyncGenerator<Buffer> {
	// No log file yet (the worker wrote nothing, or it was pruned): an empty body.
	const fh = await open(path, "r").catch(() => null);
	if (!fh) return;
	try {
		const buf = Buffer.allocUnsafe(64 * 1024);
		let pos = offset;
		for (;;) {
			const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
			if (bytesRead > 0) {
				pos += bytesRead;
				yield Buffer.from(buf.subarray(0, bytesRead));
				continue;
			}
			if (!more || signal.aborted) return;
			// Truncated under us by the log cap: the writer starts over at 0.
			if ((await fh.stat()).size < pos) pos = 0;
			const alive = more();
			await sleep(100);
			// One more drain after the worker ended, then stop.
			if (!alive) more = null;
		}
	} finally {
		await fh.close();
	}
}
