import type { DriverInfo, Limits } from "@apiary/protocol";
import { type CgroupDriver, type CreatedCgroup, emptyRawSample, type RawSample, type WorkerReader } from "@apiary/hive/driver";

/** A RawSample with every field unmeasured but those given. */
export function rawSample(over: Partial<RawSample> = {}): RawSample {
	return { ...emptyRawSample(), ...over };
}

/**
 * A cgroup driver with no kernel behind it: workers run as plain processes,
 * each reader returns what the test scripted (`samples.set(id, …)`), and every
 * call is recorded, so the supervisor is unit-tested without root or cgroups.
 */
export class FakeDriver implements CgroupDriver {
	readonly info: DriverInfo = { name: "v2", enforced: true, root: "/fake", reason: "fake driver for tests" };
	readonly created = new Map<string, Limits>();
	readonly removed: string[] = [];
	readonly killed: string[] = [];
	/** What each worker's reader returns next; absent = the cgroup is gone (null). */
	readonly samples = new Map<string, RawSample>();
	/** Workers whose reader throws, as a malformed cgroup file would make it. */
	readonly failing = new Set<string>();
	/** Cgroups "left by a previous hive", with their pids, for re-adoption tests. */
	readonly existing = new Map<string, number[]>();
	/** Each freeze and thaw asked of the driver, in order ("freeze w1", "thaw w1"); `onThaw` runs just before a thaw is recorded. */
	readonly freezes: string[] = [];
	onThaw: ((id: string) => void) | null = null;

	init(): void {}
	create(id: string, limits: Limits): CreatedCgroup {
		this.created.set(id, limits);
		this.existing.set(id, []);
		return { path: `/fake/workers/${id}`, procsFiles: [] };
	}
	pathOf(id: string): string {
		return `/fake/workers/${id}`;
	}
	reader(id: string): WorkerReader {
		const read = () => {
			if (this.failing.has(id)) throw new Error(`fake: cannot read ${id}`);
			return this.samples.get(id) ?? null;
		};
		return { read, files: () => [], close: () => {} };
	}
	list(): string[] {
		return [...this.existing.keys()];
	}
	pids(id: string): number[] {
		return this.existing.get(id) ?? [];
	}
	freeze(id: string): Promise<() => void> {
		this.freezes.push(`freeze ${id}`);
		return Promise.resolve(() => {
			this.onThaw?.(id);
			this.freezes.push(`thaw ${id}`);
		});
	}
	async killAll(id: string, pid: number): Promise<void> {
		this.killed.push(id);
		if (pid > 0) {
			try {
				process.kill(-pid, "SIGKILL");
			} catch {
				// already gone
			}
		}
	}
	async remove(id: string): Promise<void> {
		this.removed.push(id);
		this.existing.delete(id);
	}
	async destroyRoot(): Promise<void> {}
}
