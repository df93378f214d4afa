import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { detect, parseCgroupMounts } from "../../src/cgroup/detect.ts";
import { FIXTURES } from "../helpers.ts";

const mi = (name: string) => readFileSync(`${FIXTURES}mountinfo/${name}`, "utf8");
const files = (map: Record<string, string>) => (p: string) => map[p] ?? null;
const yes = () => true;

describe("cgroup driver detection", () => {
	it("parses v1 hierarchies with their controllers and the v2 mount", () => {
		const mounts = parseCgroupMounts(mi("hybrid-v1.txt"));
		const v2 = mounts.find((m) => m.fsType === "cgroup2");
		expect(v2?.mountPoint).toBe("/sys/fs/cgroup/unified");
		expect(mounts.find((m) => m.controllers.includes("memory"))?.mountPoint).toBe("/sys/fs/cgroup/memory");
	});

	it("a hybrid host (v2 mount without controllers) gets v1, with PSI from the v2 mount", () => {
		const d = detect({
			requested: "auto",
			mountinfo: mi("hybrid-v1.txt"),
			readFile: files({ "/sys/fs/cgroup/unified/cgroup.controllers": "\n" }),
			writable: yes,
		});
		expect(d.driver).toBe("v1");
		expect(d.v1?.mounts.controllers.cpuacct).toBe("/sys/fs/cgroup/cpuacct");
		expect(d.v1?.mounts.unified).toBe("/sys/fs/cgroup/unified");
		expect(d.v1?.rootName).toBe("apiary");
	});

	it("a pure v2 host with the controllers gets v2 under apiary.slice by default", () => {
		const d = detect({
			requested: "auto",
			mountinfo: mi("pure-v2.txt"),
			readFile: files({ "/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n" }),
			writable: yes,
			env: {},
		});
		expect(d.driver).toBe("v2");
		expect(d.v2?.root).toBe("/sys/fs/cgroup/apiary.slice");
	});

	it("under systemd with Delegate=yes, the unit's own cgroup is the root", () => {
		const d = detect({
			requested: "auto",
			mountinfo: mi("pure-v2.txt"),
			readFile: files({ "/sys/fs/cgroup/cgroup.controllers": "cpu io memory pids\n" }),
			selfCgroup: "0::/system.slice/apiary-hive.service\n",
			writable: (p) => p.startsWith("/sys/fs/cgroup/system.slice/apiary-hive.service"),
			env: { INVOCATION_ID: "abc" },
		});
		expect(d.driver).toBe("v2");
		expect(d.v2?.root).toBe("/sys/fs/cgroup/system.slice/apiary-hive.service");
	});

	it("with DelegateSubgroup=hive the daemon starts in <unit>/hive, and the unit is the root", () => {
		const d = detect({
			requested: "auto",
			mountinfo: mi("pure-v2.txt"),
			readFile: files({ "/sys/fs/cgroup/cgroup.controllers": "cpu io memory pids\n" }),
			selfCgroup: "0::/system.slice/apiary-hive.service/hive\n",
			writable: (p) => p.startsWith("/sys/fs/cgroup/system.slice/apiary-hive.service"),
			env: { INVOCATION_ID: "abc" },
		});
		expect(d.v2?.root).toBe("/sys/fs/cgroup/system.slice/apiary-hive.service");
	});

	it("no cgroups, or not writable: none, and the reason says why", () => {
		const d = detect({ requested: "auto", mountinfo: mi("no-cgroups.txt"), readFile: files({}), writable: yes });
		expect(d.driver).toBe("none");
		expect(d.reason).toMatch(/no cgroup2 mount/);
		const ro = detect({ requested: "auto", mountinfo: mi("hybrid-v1.txt"), readFile: files({}), writable: () => false });
		expect(ro.driver).toBe("none");
		expect(ro.reason).toMatch(/not writable/);
	});

	it("asking for v2 on a hybrid host is an error that says why", () => {
		expect(() =>
			detect({ requested: "v2", mountinfo: mi("hybrid-v1.txt"), readFile: files({ "/sys/fs/cgroup/unified/cgroup.controllers": "" }), writable: yes }),
		).toThrow(/cgroup driver v2 is not usable here: .*lacks controllers cpu memory io pids/);
	});

	it("v1 accepts --cgroup-root as a name or as a path under a controller mount", () => {
		const base = { requested: "v1" as const, mountinfo: mi("hybrid-v1.txt"), readFile: files({}), writable: yes };
		expect(detect({ ...base, cgroupRoot: "/sys/fs/cgroup/memory/ci/apiary" }).v1?.rootName).toBe("ci/apiary");
		expect(detect({ ...base, cgroupRoot: "ci" }).v1?.rootName).toBe("ci");
		expect(() => detect({ ...base, cgroupRoot: "/srv/x" })).toThrow(/not under a cgroup v1 controller mount/);
	});
});
