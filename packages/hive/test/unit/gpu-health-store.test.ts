import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { GpuError } from "@apiary/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { GpuHealth } from "../../src/gpu/gpu-health.ts";
import { parseGpuLine } from "../../src/gpu/nvidia-smi.ts";

// The hive's GPU health over real files: the kernel log followed as it
// grows, causes latched in the state dir, a reboot (a new boot id) forgetting them.

const UUID = "GPU-509665ad-b600-ac93-3616-d754b23d636d";
const FIELDS = ["index", "uuid", "pci.bus_id", "ecc.errors.uncorrected.volatile.total", "remapped_rows.failure"];
const line = (dbe: number) => parseGpuLine(`0, ${UUID}, 00000000:83:00.0, ${dbe}, No`, FIELDS);

describe("GPU health in the state dir", () => {
	const dirs: string[] = [];
	const open: GpuHealth[] = [];
	const dir = () => {
		const d = mkdtempSync(join(tmpdir(), "apiary-gpu-health-"));
		dirs.push(d);
		return d;
	};
	const make = (stateDir: string, bootId: string | null, kmsg: string | null, errors: GpuError[] = []) => {
		const h = new GpuHealth({ stateDir, bootId, kmsg, uuidOfBus: () => null, onAppError: (e) => errors.push(e), kmsgPollMs: 3_600_000 });
		open.push(h);
		h.start();
		return h;
	};
	afterEach(() => {
		for (const h of open.splice(0)) h.stop();
		for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
	});

	it("a cause survives a restart in the same boot, and is forgotten after a reboot unless seen again", () => {
		const d = dir();
		const a = make(d, "boot-1", null);
		a.reading(line(0));
		expect(a.verdict(UUID, true).health).toBe("healthy");
		a.reading(line(4));
		expect(a.verdict(UUID, true).health).toBe("unhealthy");
		a.stop();
		expect(JSON.parse(readFileSync(join(d, "gpu-health.json"), "utf8"))).toMatchObject({ bootId: "boot-1", causes: { [UUID]: [{ code: "ecc-dbe" }] } });
		// Restarted, same boot, and the reading is fine now (volatile counters are reset by a driver reload): still latched.
		const b = make(d, "boot-1", null);
		b.reading(line(0));
		expect(b.verdict(UUID, true).healthReasons.map((r) => r.code)).toEqual(["ecc-dbe"]);
		b.stop();
		// The host rebooted: forgotten, and healthy while it stays so.
		const c = make(d, "boot-2", null);
		c.reading(line(0));
		expect(c.verdict(UUID, true).health).toBe("healthy");
		// The file says so at once (a crash now would not bring the old causes back).
		expect(JSON.parse(readFileSync(join(d, "gpu-health.json"), "utf8"))).toEqual({ bootId: "boot-2", causes: {} });
		// …and a condition still there after the reboot is seen again.
		c.reading(line(1));
		expect(c.verdict(UUID, true).health).toBe("unhealthy");
	});

	it("the kernel log is followed as it grows; a restart goes on where it stopped, so an admin's clear is not undone", async () => {
		const d = dir();
		const log = join(d, "kmsg");
		writeFileSync(log, "6,1,100,-;NVRM: GPU at PCI:0000:83:00: GPU-509665ad-b600-ac93-3616-d754b23d636d\n");
		const errors: GpuError[] = [];
		const a = make(d, "boot-1", log, errors);
		await a.pollKmsg();
		expect(a.kmsgReadable).toBe(true);
		expect(a.verdict(UUID, false).health).toBe("healthy"); // the log is readable: something can be known
		appendFileSync(log, "3,2,200,-;NVRM: Xid (PCI:0000:83:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error\n");
		// Half a record: taken once its end is written.
		appendFileSync(log, "3,3,300,-;NVRM: Xid (PCI:0000:83:00): 13, pid=4242, name=python3, Graphics SM ");
		await a.pollKmsg();
		expect(a.verdict(UUID, false).healthReasons.map((r) => r.code)).toEqual(["xid-48"]);
		expect(errors).toEqual([]);
		appendFileSync(log, "Warp Exception\n");
		await a.pollKmsg();
		expect(errors).toMatchObject([{ xid: 13, gpu: UUID, pid: 4242, message: "Graphics SM Warp Exception" }]);
		expect(a.verdict(UUID, false).healthReasons.map((r) => r.code)).toEqual(["xid-48"]);
		expect(a.clear(UUID)).toBe(true);
		a.stop();
		const b = make(d, "boot-1", log, errors);
		await b.pollKmsg();
		expect(b.verdict(UUID, false).health).toBe("healthy");
		expect(errors).toHaveLength(1);
		// A log that is not there: said, and then nothing can be known from it.
		const c = make(dir(), "boot-1", join(d, "no-such-log"));
		expect(c.kmsgReadable).toBe(false);
		expect(c.verdict(UUID, false).health).toBeNull();
	});
});
