import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";

// A test's own network (the chaos tier, issue #21): one network namespace per
// role (queen, hive, …), each with one veth into a bridge that lives in a
// namespace of its own (the "switch"), and one veth from this namespace into
// that bridge, so the test reaches every role and nothing is forwarded by the
// host. Addresses are 10.231.N.0/24 with N free on this host. Partitions are
// nft drop rules inside a role's namespace (this kernel has no netem qdisc).
// destroy() removes every namespace and link, whatever state they are in.

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });
const inNs = (ns: string, ...cmd: string[]) => execFileSync("ip", ["netns", "exec", ns, ...cmd], { stdio: "pipe" });

export interface TestNet {
	/** This namespace's address on the test's bridge. */
	hostAddr: string;
	/** A role's namespace name (to run a daemon in it: `ip netns exec NAME …`). */
	ns(role: string): string;
	/** A role's address on the bridge. */
	addr(role: string): string;
	/** The command prefix that runs a program in a role's namespace. */
	wrap(role: string): string[];
	/** Drops every packet between `role` and `peer` (both ways), in `role`'s namespace. */
	partition(role: string, peer: string): void;
	/** Removes every drop rule of `role`'s namespace. */
	heal(role: string): void;
	destroy(): void;
}

function freeSubnet(): number {
	const used = execFileSync("ip", ["-4", "-o", "addr"], { encoding: "utf8" });
	for (let tries = 0; tries < 64; tries++) {
		const n = 1 + Math.floor(Math.random() * 254);
		if (!used.includes(`10.231.${n}.`)) return n;
	}
	throw new Error("no free 10.231.N.0/24 on this host");
}

export function makeNet(roles: string[]): TestNet {
	if (process.getuid?.() !== 0) throw new Error("the chaos tier makes network namespaces: it runs as root");
	for (const [tool, pkg] of [
		["nft", "nftables"],
		["ip", "iproute2"],
	])
		if (!existsSync(`/usr/sbin/${tool}`) && !existsSync(`/sbin/${tool}`))
			throw new Error(`${tool} not found: install the Debian package ${pkg} (npm test run as root installs it: scripts/setup.sh)`);
	const id = randomBytes(3).toString("hex");
	const n = freeSubnet();
	const sw = `apx-${id}-sw`;
	const hostLink = `apx${id}`;
	const names = new Map(roles.map((r, i) => [r, { ns: `apx-${id}-${r}`, addr: `10.231.${n}.${10 + i}` }]));
	const made: string[] = [];
	const destroy = () => {
		for (const ns of made.reverse()) {
			try {
				ip("netns", "del", ns);
			} catch {
				// gone already
			}
		}
		made.length = 0;
		try {
			ip("link", "del", hostLink);
		} catch {
			// went with the switch's namespace
		}
	};
	try {
		ip("netns", "add", sw);
		made.push(sw);
		inNs(sw, "ip", "link", "add", "br0", "type", "bridge");
		inNs(sw, "ip", "link", "set", "br0", "up");
		ip("link", "add", hostLink, "type", "veth", "peer", "name", "host", "netns", sw);
		ip("addr", "add", `10.231.${n}.1/24`, "dev", hostLink);
		ip("link", "set", hostLink, "up");
		inNs(sw, "ip", "link", "set", "host", "master", "br0", "up");
		let i = 0;
		for (const { ns, addr } of names.values()) {
			ip("netns", "add", ns);
			made.push(ns);
			const port = `p${i++}`;
			ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw);
			inNs(sw, "ip", "link", "set", port, "master", "br0", "up");
			inNs(ns, "ip", "addr", "add", `${addr}/24`, "dev", "eth0");
			inNs(ns, "ip", "link", "set", "eth0", "up");
			inNs(ns, "ip", "link", "set", "lo", "up");
			inNs(
				ns,
				"nft",
				"add table inet apx; add chain inet apx input { type filter hook input priority 0; }; add chain inet apx output { type filter hook output priority 0; }",
			);
		}
	} catch (err) {
		destroy();
		throw new Error(`making the test's network failed: ${(err as { stderr?: Buffer }).stderr?.toString() ?? String(err)}`, { cause: err });
	}
	const role = (r: string) => {
		const x = names.get(r);
		if (!x) throw new Error(`no role ${r} in this test's network`);
		return x;
	};
	return {
		hostAddr: `10.231.${n}.1`,
		ns: (r) => role(r).ns,
		addr: (r) => role(r).addr,
		wrap: (r) => ["ip", "netns", "exec", role(r).ns],
		partition(r, peer) {
			const other = role(peer).addr;
			inNs(role(r).ns, "nft", `add rule inet apx input ip saddr ${other} drop; add rule inet apx output ip daddr ${other} drop`);
		},
		heal(r) {
			inNs(role(r).ns, "nft", "flush chain inet apx input; flush chain inet apx output");
		},
		destroy,
	};
}
