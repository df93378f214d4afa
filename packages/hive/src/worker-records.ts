import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { WorkerInfo } from "@apiary/protocol";

/** A worker's record on disk: its info (stats are hot state, not kept) plus what re-adoption needs. */
export type SavedWorker = Omit<WorkerInfo, "stats"> & {
	/** /proc start time of the main pid, to recognise it across pid reuse. */
	startTicks: number | null;
	/** The queen has acknowledged its exit record. */
	reported?: boolean;
};

/** The worker as the API shows it, from its record (stats come with the next tick). */
export function infoOf(rec: SavedWorker): WorkerInfo {
	const { startTicks: _t, reported: _r, ...info } = rec;
	return { ...info, stats: null };
}

/**
 * One JSON file per worker under <state>/workers, written atomically
 * (temp file + rename), and the worker logs under <state>/logs.
 */
export class WorkerRecords {
	readonly dir: string;
	readonly logsDir: string;

	constructor(stateDir: string) {
		this.dir = join(stateDir, "workers");
		this.logsDir = join(stateDir, "logs");
		// The hive's alone: workers (another user) can neither read records (they hold env values) nor write logs.
		mkdirSync(this.dir, { recursive: true, mode: 0o700 });
		mkdirSync(this.logsDir, { recursive: true, mode: 0o700 });
		for (const d of [stateDir, this.dir, this.logsDir]) chmodSync(d, 0o700);
	}

	/**
	 * The hive was alive at `wall` (ms): written every tick, so a restarted
	 * hive knows a bound on when a worker that ended meanwhile was last alive.
	 */
	markAlive(wall: number): void {
		writeFileSync(join(this.dir, "..", "alive"), String(wall));
	}

	/** When the previous hive last marked itself alive, or null. */
	lastAlive(): number | null {
		try {
			const v = Number(readFileSync(join(this.dir, "..", "alive"), "latin1"));
			return Number.isFinite(v) && v > 0 ? v : null;
		} catch {
			// Never marked (a first start) or unreadable: no bound beyond the start.
			return null;
		}
	}

	logPath(id: string): string {
		return join(this.logsDir, `${id}.log`);
	}

	private path(id: string): string {
		return join(this.dir, `${id}.json`);
	}

	save(info: WorkerInfo, startTicks: number | null, reported: boolean): void {
		const { stats: _stats, ...rest } = info;
		const path = this.path(info.id);
		try {
			writeFileSync(`${path}.tmp`, JSON.stringify({ ...rest, startTicks, reported } satisfies SavedWorker));
			renameSync(`${path}.tmp`, path);
		} catch (err) {
			// A full disk leaves no half-written temp file behind; the caller keeps the record in memory.
			rmSync(`${path}.tmp`, { force: true });
			throw err;
		}
	}

	remove(id: string): void {
		rmSync(this.path(id), { force: true });
	}

	/** Every readable record; an unreadable one is reported through `bad` and skipped (the cgroup walk still finds its worker). */
	loadAll(bad: (file: string, err: unknown) => void): Map<string, SavedWorker> {
		const out = new Map<string, SavedWorker>();
		for (const f of readdirSync(this.dir)) {
			if (!f.endsWith(".json")) continue;
			try {
				const rec = JSON.parse(readFileSync(join(this.dir, f), "utf8")) as SavedWorker;
				out.set(rec.id, rec);
			} catch (err) {
				bad(f, err);
			}
		}
		return out;
	}
}
