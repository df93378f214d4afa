import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { limitsAcceptance } from "../acceptance.ts";
import { detect } from "../../src/cgroup/detect.ts";

// Runs inside the qemu guest booted by scripts/cgroup-v2-vm.sh: a pure cgroup
// v2 kernel with cpu memory io pids enabled at the root, and a raw scratch
// disk at /dev/vda for io.stat.
describe("the guest", () => {
	it("is a pure cgroup v2 host, detected as such", () => {
		const d = detect({ requested: "auto", cgroupRoot: "/sys/fs/cgroup/apiary-test-detect" });
		expect(d.driver).toBe("v2");
		expect(existsSync("/dev/vda")).toBe(true);
	});
});

limitsAcceptance("v2", () => "/dev/vda");
