import { describe, expect, it } from "vitest";
import { detect } from "../../src/cgroup/detect.ts";

const HYBRID = [
	"30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
	"31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
	"32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids",
].join("\n");

describe("the default cgroup root is per hive", () => {
	it("v1: apiary/<hive id>, so two hives on one host never share a root by default", () => {
		const d = detect({ requested: "v1", mountinfo: HYBRID, writable: () => true, readFile: () => null, hiveId: "gpu-7" });
		expect(d.v1!.rootName).toBe("apiary/gpu-7");
		expect(detect({ requested: "v1", mountinfo: HYBRID, writable: () => true, readFile: () => null, hiveId: "gpu-7", cgroupRoot: "mine" }).v1!.rootName).toBe(
			"mine",
		);
	});
	it("v2: apiary.slice/<hive id> outside systemd", () => {
		const d = detect({
			requested: "v2",
			mountinfo: "40 25 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw",
			writable: () => true,
			readFile: (p) => (p.endsWith("cgroup.controllers") ? "cpu memory io pids" : null),
			selfCgroup: "0::/user.slice",
			env: {},
			hiveId: "gpu-7",
		});
		expect(d.v2!.root).toBe("/sys/fs/cgroup/apiary.slice/gpu-7");
	});
});
