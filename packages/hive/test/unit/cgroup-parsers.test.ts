import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bytesOf, CgroupParseError, Keys, parseKeyValue, scanKeyValues } from "../../src/cgroup/parse.ts";
import { StatFile } from "../../src/statfile.ts";
import { parsePressure, scanPressure } from "../../src/cgroup/psi.ts";
import { parseBlkioV1, parseCpuStatV1, parseMemoryStatV1, parseOomControl, scanBlkioV1, scanMemoryStatV1 } from "../../src/cgroup/v1/stats.ts";
import { formatCpuMax, parseCpuStat } from "../../src/cgroup/v2/cpu.ts";
import { parseIoStat } from "../../src/cgroup/v2/io.ts";
import { parseMemoryEvents, parseMemoryStat } from "../../src/cgroup/v2/memory.ts";

// Literal file contents as the kernel prints them (captured on 6.1 / 6.18).

describe("cgroup v2 files", () => {
	it("cpu.stat gives usage and throttling in ns", () => {
		const r = parseCpuStat(
			"usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 40\nnr_throttled 18\nthrottled_usec 900000\nnr_bursts 0\nburst_usec 0\n",
		);
		expect(r).toEqual({ usageNs: 2_500_000_000, periods: 40, throttledPeriods: 18, throttledNs: 900_000_000 });
	});

	it("cpu.stat without the cpu controller has no throttling: null, not 0", () => {
		const r = parseCpuStat("usage_usec 62377\nuser_usec 0\nsystem_usec 62377\n");
		expect(r.usageNs).toBe(62_377_000);
		expect(r.periods).toBeNull();
		expect(r.throttledNs).toBeNull();
	});

	it("cpu.max is quota and period, or max", () => {
		expect(formatCpuMax(0.5)).toBe("50000 100000");
		expect(formatCpuMax(2)).toBe("200000 100000");
		expect(formatCpuMax(null)).toBe("max 100000");
	});

	it("memory.stat and memory.events", () => {
		const m = parseMemoryStat("anon 52428800\nfile 4096\nkernel 8192\nshmem 2048\nactive_file 0\ninactive_file 4096\n");
		expect(m).toEqual({ anonBytes: 52428800, fileBytes: 4096, inactiveFileBytes: 4096, shmemBytes: 2048 });
		// A kernel that prints no shmem: not measured, not 0.
		expect(parseMemoryStat("anon 1\nfile 2\ninactive_file 3\n").shmemBytes).toBeNull();
		expect(parseMemoryEvents("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")).toEqual({ oomKills: 1, ooms: 1 });
	});

	it("io.stat sums devices and ignores unknown keys", () => {
		const r = parseIoStat(
			"254:0 rbytes=4096 wbytes=20971520 rios=1 wios=20 dbytes=0 dios=0\n8:0 rbytes=100 wbytes=0 rios=2 wios=0 dbytes=0 dios=0 cost.vrate=100.00\n",
		);
		expect(r).toEqual({ readBytes: 4196, writeBytes: 20971520, readOps: 3, writeOps: 20 });
		expect(parseIoStat("")).toEqual({ readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 });
	});

	it("a malformed file is an error that names the file", () => {
		expect(() => parseIoStat("garbage here\n")).toThrow(CgroupParseError);
		expect(() => parseIoStat("garbage here\n")).toThrow(/io\.stat/);
		expect(() => parseKeyValue("usage_usec lots\n", "cpu.stat", ["usage_usec"])).toThrow(/cpu\.stat: malformed line "usage_usec lots"/);
	});

	it("single-value files are parsed from the read buffer: max is no limit, absent is undefined, garbage names the file", () => {
		const dir = mkdtempSync(join(tmpdir(), "apiary-statfile-"));
		const f = (name: string, text: string | null) => {
			if (text !== null) writeFileSync(join(dir, name), text);
			return new StatFile(join(dir, name));
		};
		try {
			expect(f("memory.max", "67108864\n").readNumber()).toBe(67108864);
			expect(f("pids.max", "max\n").readNumber()).toBeNull();
			expect(f("memory.peak", null).readNumber()).toBeUndefined(); // before 5.19: not measured
			expect(f("limit_in_bytes", "9223372036854771712\n").readNumber()!).toBeGreaterThan(2 ** 62);
			expect(() => f("memory.current", "lots\n").readNumber()).toThrow(/memory\.current: expected a number, got "lots\\n"/);
			expect(() => f("pids.current", "12abc\n").readNumber()).toThrow(/pids\.current/);
		} finally {
			rmSync(dir, { recursive: true, force: true });
		}
	});
});

describe("PSI", () => {
	it("parses some and full", () => {
		const p = parsePressure("some avg10=1.50 avg60=0.20 avg300=0.05 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=789\n");
		expect(p.some).toEqual({ avg10: 1.5, avg60: 0.2, avg300: 0.05, totalUs: 123456 });
		expect(p.full?.totalUs).toBe(789);
	});
	it("cpu.pressure before 5.13 has no full line: null", () => {
		expect(parsePressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").full).toBeNull();
	});
	it("rejects garbage", () => {
		expect(() => parsePressure("some avg10=x\n", "cpu.pressure")).toThrow(/cpu\.pressure/);
	});
});

describe("cgroup v1 files", () => {
	it("cpu.stat gives throttling; throttled_time is already ns", () => {
		expect(parseCpuStatV1("nr_periods 30\nnr_throttled 29\nthrottled_time 1460000000\nnr_bursts 0\nburst_time 0\n")).toEqual({
			periods: 30,
			throttledPeriods: 29,
			throttledNs: 1_460_000_000,
		});
	});

	it("memory.stat uses the hierarchical totals", () => {
		const text = "cache 0\nrss 100\nshmem 1\ninactive_file 0\ntotal_cache 8192\ntotal_rss 52428800\ntotal_shmem 4096\ntotal_inactive_file 4096\n";
		expect(parseMemoryStatV1(text)).toEqual({ anonBytes: 52428800, fileBytes: 8192, inactiveFileBytes: 4096, shmemBytes: 4096 });
	});

	it("memory.stat keys are found at line starts only, and a malformed wanted value is an error", () => {
		expect(parseMemoryStatV1("rss_huge 7\ntotal_rss_huge 9\ntotal_rss 5\n").anonBytes).toBe(5);
		expect(parseMemoryStatV1("rss_huge 7\n").anonBytes).toBeNull(); // absent, not 7
		expect(() => parseMemoryStatV1("total_rss lots\n")).toThrow(/memory\.stat: malformed line "total_rss lots"/);
	});

	it("memory.oom_control counts OOM kills (4.13+) and absence is null", () => {
		expect(parseOomControl("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")).toEqual({ oomKills: 2, underOom: false });
		expect(parseOomControl("oom_kill_disable 0\nunder_oom 0\n").oomKills).toBeNull();
	});

	it("blkio.throttle files sum Read and Write over devices", () => {
		const text =
			"254:0 Read 4096\n254:0 Write 20971520\n254:0 Sync 20975616\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 20975616\n8:0 Read 1\n8:0 Write 2\nTotal 20975619\n";
		expect(parseBlkioV1(text, "blkio.throttle.io_service_bytes")).toEqual({ read: 4097, write: 20971522 });
		expect(parseBlkioV1("Total 0\n", "x")).toEqual({ read: 0, write: 0 });
		expect(() => parseBlkioV1("254:0 Read many\n", "blkio.throttle.io_serviced")).toThrow(/blkio\.throttle\.io_serviced/);
	});
});

describe("scanning the shared read buffer", () => {
	// The tick reads every file into one buffer; bytes past what the last read
	// returned are stale leftovers of a longer file and must never be parsed.
	const withTail = (text: string, tail: string) => ({ b: bytesOf(text + tail), n: text.length });

	it("key-value, memory.stat, blkio and PSI scanners stop at the length read", () => {
		const kv = withTail("nr_periods 5\n", "nr_throttled 99\nthrottled_time 7\n");
		expect(scanKeyValues(kv.b, kv.n, "cpu.stat", new Keys(["nr_periods", "nr_throttled"]), [])).toEqual([5, null]);
		const mem = withTail("total_cache 1\ntotal_rss 2\n", "total_inactive_file 3\n");
		expect(scanMemoryStatV1(mem.b, mem.n, [])).toEqual([2, 1, null, null]);
		const io = withTail("8:0 Read 10\nTotal 10\n", "8:0 Write 99\n");
		expect(scanBlkioV1(io.b, io.n, "blkio")).toEqual({ read: 10, write: 0 });
		const p = withTail("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n", "full avg10=9.00 avg60=9.00 avg300=9.00 total=9\n");
		expect(scanPressure(p.b, p.n)).toEqual({ some: { avg10: 0, avg60: 0, avg300: 0, totalUs: 7 }, full: null });
	});

	it("memory.stat keys are read where they were last found, and searched again when the layout moved", () => {
		const hints = new Int32Array(4).fill(-1);
		const stat = (rss: string, total: string) => `cache 0\nrss ${rss}\ntotal_cache 8192\ntotal_rss ${total}\ntotal_shmem 512\ntotal_inactive_file 4096\n`;
		const a = bytesOf(stat("100", "52428800"));
		expect(scanMemoryStatV1(a, a.length, [], hints)).toEqual([52428800, 8192, 4096, 512]);
		const remembered = [...hints];
		expect(remembered.every((h) => h > 0)).toBe(true);
		const b = bytesOf(stat("100", "52428801")); // same layout: the remembered places are used
		expect(scanMemoryStatV1(b, b.length, [], hints)).toEqual([52428801, 8192, 4096, 512]);
		expect([...hints]).toEqual(remembered);
		const c = bytesOf(stat("123456789", "9")); // a wider value before them moves every key
		expect(scanMemoryStatV1(c, c.length, [], hints)).toEqual([9, 8192, 4096, 512]);
		expect(hints[0]).toBe(remembered[0]! + 6);
		const d = bytesOf("total_cache 1\n"); // keys that vanished are absent, not stale
		expect(scanMemoryStatV1(d, d.length, [], hints)).toEqual([null, 1, null, null]);
	});

	it("a value cut short by the length read is malformed, not a smaller number", () => {
		const kv = withTail("nr_periods ", "5\n");
		expect(() => scanKeyValues(kv.b, kv.n, "cpu.stat", new Keys(["nr_periods"]), [])).toThrow(/cpu\.stat/);
	});

	it("PSI decimals are exactly what Number() gives, and malformed numbers are errors", () => {
		const p = parsePressure("some avg10=12.34 avg60=0.05 avg300=100.00 total=9007199254740991\n");
		expect(p.some).toEqual({ avg10: Number("12.34"), avg60: Number("0.05"), avg300: 100, totalUs: 9007199254740991 });
		for (const bad of ["1..5", "1.", "", "1x", "-1"])
			expect(() => parsePressure(`some avg10=${bad} avg60=0.00 avg300=0.00 total=0\n`, "io.pressure")).toThrow(/io\.pressure/);
	});

	it("a single-number file read after a longer one is parsed from its own bytes", () => {
		const dir = mkdtempSync(join(tmpdir(), "apiary-statfile-"));
		try {
			writeFileSync(join(dir, "long"), "123456789012\n");
			writeFileSync(join(dir, "short"), "42\n");
			expect(new StatFile(join(dir, "long")).readNumber()).toBe(123456789012);
			expect(new StatFile(join(dir, "short")).readNumber()).toBe(42);
		} finally {
			rmSync(dir, { recursive: true, force: true });
		}
	});
});
