import { accessSync, constants, readFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative } from "node:path";
import type { CgroupDriverName } from "@apiary/protocol";
import { HOST, type HostRoot } from "../host-root.ts";
import type { CgroupDriver } from "./driver.ts";
import { NoCgroupDriver } from "./none.ts";
import { CgroupV1Driver, V1_OPTIONAL, V1_REQUIRED, type V1Mounts } from "./v1/driver.ts";
import { CgroupV2Driver, V2_CONTROLLERS } from "./v2/driver.ts";

export interface CgroupMount {
	mountPoint: string;
	fsType: "cgroup" | "cgroup2";
	/** v1: the controllers this hierarchy carries (from the super options). */
	controllers: string[];
}

/** /proc/self/mountinfo → the cgroup mounts. Pure. */
export function parseCgroupMounts(mountinfo: string): CgroupMount[] {
	const out: CgroupMount[] = [];
	for (const line of mountinfo.split("\n")) {
		const sep = line.indexOf(" - ");
		if (sep < 0) continue;
		const pre = line.slice(0, sep).split(" ");
		const [fsType, , superOpts = ""] = line.slice(sep + 3).split(" ");
		if (fsType !== "cgroup" && fsType !== "cgroup2") continue;
		const mountPoint = pre[4]!.replace(/\\040/g, " ");
		const opts = superOpts.split(",");
		const known = [...V1_REQUIRED, ...V1_OPTIONAL, "cpuset", "devices", "net_cls", "perf_event", "hugetlb"];
		out.push({ mountPoint, fsType, controllers: fsType === "cgroup" ? opts.filter((o) => known.includes(o)) : [] });
	}
	return out;
}

export interface DetectOptions {
	requested: "auto" | CgroupDriverName;
	/** --cgroup-root: v2 an absolute path; v1 a name under each controller (an absolute path under one is accepted). */
	cgroupRoot?: string;
	mountinfo?: string;
	/** Reads a file; injectable so detection can be tested on fixtures. */
	readFile?: (path: string) => string | null;
	writable?: (path: string) => boolean;
	/** This process's /proc/self/cgroup, to find a systemd-delegated cgroup. */
	selfCgroup?: string;
	env?: NodeJS.ProcessEnv;
	/** Where /proc is read from when mountinfo or selfCgroup are not given. */
	host?: HostRoot;
	/** The hive's id: the default root is per hive, so two hives on one host never share one. */
	hiveId?: string;
}

export interface Detection {
	driver: CgroupDriverName;
	reason: string;
	v2?: { mount: string; root: string };
	v1?: { mounts: V1Mounts; rootName: string };
}

const read = (p: string) => {
	try {
		return readFileSync(p, "latin1");
	} catch {
		// Absent (an older kernel, no such mount): detection treats it as "not there".
		return null;
	}
};
const canWrite = (p: string) => {
	try {
		accessSync(p, constants.W_OK);
		return true;
	} catch {
		// EACCES/EROFS/ENOENT all mean the same here: not ours to write.
		return false;
	}
};

/** Decide which driver fits this host. Pure given its inputs. */
export function detect(opts: DetectOptions): Detection {
	const readFile = opts.readFile ?? read;
	const writable = opts.writable ?? canWrite;
	const proc = (opts.host ?? HOST).proc;
	const mounts = parseCgroupMounts(opts.mountinfo ?? readFile(`${proc}/self/mountinfo`) ?? "");
	const env = opts.env ?? process.env;
	const problems: string[] = [];

	const tryV2 = (): Detection | null => {
		const m = mounts.find((x) => x.fsType === "cgroup2");
		if (!m) {
			problems.push("v2: no cgroup2 mount");
			return null;
		}
		const available = (readFile(join(m.mountPoint, "cgroup.controllers")) ?? "").trim().split(/\s+/);
		const missing = V2_CONTROLLERS.filter((c) => !available.includes(c));
		if (missing.length > 0) {
			problems.push(`v2: ${m.mountPoint} lacks controllers ${missing.join(" ")} (hybrid host?)`);
			return null;
		}
		let root = opts.cgroupRoot;
		let why = "--cgroup-root";
		if (!root) {
			// Under systemd with Delegate=yes the unit's own cgroup is ours to manage.
			const own = (opts.selfCgroup ?? readFile(`${proc}/self/cgroup`) ?? "").split("\n").find((l) => l.startsWith("0::"));
			const ownDir = own ? join(m.mountPoint, own.slice(3)) : null;
			// With DelegateSubgroup=hive (systemd 254+) the daemon starts in <unit>/hive: the unit is the root.
			const unitDir = ownDir && basename(ownDir) === "hive" ? dirname(ownDir) : ownDir;
			if (env.INVOCATION_ID && unitDir && own!.slice(3) !== "/" && writable(join(unitDir, "cgroup.subtree_control"))) {
				root = unitDir;
				why = "systemd-delegated cgroup";
			} else {
				root = opts.hiveId ? join(m.mountPoint, "apiary.slice", opts.hiveId) : join(m.mountPoint, "apiary.slice");
				why = "default root";
			}
		}
		if (!isAbsolute(root)) root = join(m.mountPoint, root);
		if (!writable(m.mountPoint) && !writable(root)) {
			problems.push(`v2: ${root} is not writable`);
			return null;
		}
		return { driver: "v2", reason: `cgroup v2 at ${m.mountPoint} (${why} ${root})`, v2: { mount: m.mountPoint, root } };
	};

	const tryV1 = (): Detection | null => {
		const controllers: Record<string, string> = {};
		for (const m of mounts) if (m.fsType === "cgroup") for (const c of m.controllers) controllers[c] = m.mountPoint;
		const missing = V1_REQUIRED.filter((c) => !controllers[c]);
		if (missing.length > 0) {
			problems.push(`v1: no hierarchy for ${missing.join(" ")}`);
			return null;
		}
		if (!writable(controllers.memory!)) {
			problems.push(`v1: ${controllers.memory} is not writable (not root?)`);
			return null;
		}
		const unified = mounts.find((m) => m.fsType === "cgroup2");
		let rootName = opts.cgroupRoot ?? (opts.hiveId ? `apiary/${opts.hiveId}` : "apiary");
		if (isAbsolute(rootName)) {
			const under = Object.values(controllers).find((mp) => rootName.startsWith(`${mp}/`));
			if (!under) throw new Error(`--cgroup-root ${rootName} is not under a cgroup v1 controller mount`);
			rootName = relative(under, rootName);
		}
		const unifiedDir = unified && writable(unified.mountPoint) ? unified.mountPoint : null;
		const optional = V1_OPTIONAL.filter((c) => !controllers[c]);
		return {
			driver: "v1",
			reason: `cgroup v1 controllers ${Object.keys(controllers).sort().join(",")}${optional.length ? ` (without ${optional.join(",")})` : ""}${unifiedDir ? `; PSI from hybrid v2 mount ${unifiedDir}` : ""}`,
			v1: { mounts: { controllers, unified: unifiedDir }, rootName },
		};
	};

	switch (opts.requested) {
		case "v2":
		case "v1": {
			const d = opts.requested === "v2" ? tryV2() : tryV1();
			if (!d) throw new Error(`cgroup driver ${opts.requested} is not usable here: ${problems.join("; ")}`);
			return d;
		}
		case "none":
			return { driver: "none", reason: "requested with --cgroup-driver none" };
		default:
			return tryV2() ?? tryV1() ?? { driver: "none", reason: `no usable cgroups: ${problems.join("; ")}` };
	}
}

export function createDriver(d: Detection, host: HostRoot = HOST): CgroupDriver {
	if (d.driver === "v2") return new CgroupV2Driver(d.v2!.mount, d.v2!.root, d.reason);
	if (d.driver === "v1") return new CgroupV1Driver(d.v1!.mounts, d.v1!.rootName, d.reason, host.sys);
	return new NoCgroupDriver(d.reason, host.proc);
}
