import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { V1Reader } from "../../src/cgroup/v1/driver.ts";
import { V2Reader } from "../../src/cgroup/v2/driver.ts";

// A worker's cgroup as plain files in a temp dir: one file malformed or
// missing nulls its own fields; every other field still flows.
const root = mkdtempSync(join(tmpdir(), "apiary-partial-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const V2_FILES: Record<string, string> = {
	"cpu.stat": "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 300\n",
	"memory.current": "1048576\n",
	"memory.peak": "2097152\n",
	"memory.stat": "anon 524288\nfile 262144\ninactive_file 131072\n",
	"memory.max": "max\n",
	"memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
	"io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
	"pids.current": "3\n",
	"pids.max": "64\n",
	"cpu.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=10\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
	"memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
	"io.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
};

function cgroupDir(name: string, files: Record<string, string | null>): string {
	const dir = join(root, name);
	mkdirSync(dir, { recursive: true });
	for (const [f, text] of Object.entries(files)) if (text !== null) writeFileSync(join(dir, f), text);
	return dir;
}

describe("partial stats", () => {
	it("v2: a malformed memory.stat nulls anon/file/inactive only, logged once naming the file; the rest flows", () => {
		const dir = cgroupDir("v2-bad-memstat", { ...V2_FILES, "memory.stat": "anon lots\n" });
		const bad: string[] = [];
		const r = new V2Reader(dir, (path, err) => bad.push(`${path}: ${err.message}`));
		const s = r.read()!;
		expect(s).toMatchObject({ anonBytes: null, fileBytes: null, inactiveFileBytes: null });
		expect(s).toMatchObject({
			cpuUsageNs: 2_000_000,
			memoryCurrent: 1048576,
			memoryPeak: 2097152,
			oomKills: 0,
			readBytes: 4096,
			pidsCurrent: 3,
			pidsLimit: 64,
			throttledPeriods: 2,
		});
		expect(s.pressure.cpu?.some.totalUs).toBe(10);
		r.read();
		expect(bad).toHaveLength(1); // once, not every tick
		expect(bad[0]).toMatch(/memory\.stat/);
		r.close();
	});

	it("v2: a vanished pids.current and a garbage io.stat null their own fields; a vanished cpu.stat means the cgroup is gone", () => {
		const dir = cgroupDir("v2-holes", { ...V2_FILES, "pids.current": null, "io.stat": "garbage\n" });
		const bad: string[] = [];
		const r = new V2Reader(dir, (path) => bad.push(path));
		const s = r.read()!;
		expect(s.pidsCurrent).toBeNull();
		expect(s).toMatchObject({ readBytes: null, writeBytes: null, readOps: null, writeOps: null });
		expect(s).toMatchObject({ cpuUsageNs: 2_000_000, anonBytes: 524288, pidsLimit: 64 });
		expect(bad).toEqual([join(dir, "io.stat")]); // absent is "not measured", not an error
		r.close();
		rmSync(join(dir, "cpu.stat"));
		expect(new V2Reader(dir).read()).toBeNull();
	});

	it("v1: a malformed memory.oom_control nulls oomKills only; the rest flows", () => {
		const hier = (c: string) => cgroupDir(`v1-${c}`, {});
		const dirs: Record<string, string> = { cpuacct: hier("cpuacct"), cpu: hier("cpu"), memory: hier("memory"), pids: hier("pids") };
		writeFileSync(join(dirs.cpuacct!, "cpuacct.usage"), "5000000\n");
		writeFileSync(join(dirs.cpu!, "cpu.stat"), "nr_periods 4\nnr_throttled 1\nthrottled_time 900\n");
		writeFileSync(join(dirs.memory!, "memory.usage_in_bytes"), "4096\n");
		writeFileSync(join(dirs.memory!, "memory.max_usage_in_bytes"), "8192\n");
		writeFileSync(join(dirs.memory!, "memory.stat"), "total_rss 1000\ntotal_cache 2000\ntotal_inactive_file 500\n");
		writeFileSync(join(dirs.memory!, "memory.limit_in_bytes"), "9223372036854771712\n");
		writeFileSync(join(dirs.memory!, "memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill lots\n");
		writeFileSync(join(dirs.pids!, "pids.current"), "2\n");
		writeFileSync(join(dirs.pids!, "pids.max"), "max\n");
		const bad: string[] = [];
		const r = new V1Reader(
			(c) => dirs[c] ?? null,
			(path) => bad.push(path),
		);
		const s = r.read()!;
		expect(s.oomKills).toBeNull();
		expect(s).toMatchObject({
			cpuUsageNs: 5_000_000,
			periods: 4,
			throttledNs: 900,
			memoryCurrent: 4096,
			memoryPeak: 8192,
			anonBytes: 1000,
			memoryLimit: null,
			pidsCurrent: 2,
			pidsLimit: null,
		});
		expect(bad).toEqual([join(dirs.memory!, "memory.oom_control")]);
		r.close();
	});
});
