import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { removeCg } from "../../src/cgroup/fsutil.ts";
import { until } from "../helpers.ts";

const BIN = new URL("../../bin/hive.js", import.meta.url).pathname;

// cgroup v2's no-internal-processes rule: a daemon started inside its own
// root (as under systemd's Delegate=yes) must move to <root>/hive before it
// can hand controllers down to workers/.
it("a hive started inside its cgroup root moves to <root>/hive and enables cpu memory io pids for its workers", async () => {
	const root = `/sys/fs/cgroup/apiary-test-daemon-${process.pid}`;
	const stateDir = mkdtempSync(join(tmpdir(), "apiary-test-vmd-"));
	mkdirSync(root);
	const proc = spawn(
		"/bin/sh",
		[
			"-c",
			`echo $$ > ${root}/cgroup.procs && exec "$0" "$@"`,
			process.execPath,
			BIN,
			"start",
			"--listen",
			"127.0.0.1:0",
			"--cgroup-root",
			root,
			"--state-dir",
			stateDir,
			"--nvidia-smi",
			"/nonexistent",
		],
		{
			stdio: ["ignore", "pipe", "pipe"],
		},
	);
	let out = "";
	proc.stdout.on("data", (d) => {
		out += d;
	});
	proc.stderr.on("data", (d) => {
		out += d;
	});
	try {
		// Under qemu's software emulation (no KVM here) a daemon start that takes
		// 0.9 s natively takes ~80 s: module loading and schema compilation.
		const url = (await until(() => /listening on (http:\/\/\S+)/.exec(out) ?? (proc.exitCode !== null ? [null, null] : null), 180_000, "hive start"))[1];
		if (!url) throw new Error(`hive start failed: ${out}`);
		expect(out).toMatch(/cgroup driver: v2 \(limits enforced\)/);
		expect(readFileSync(`/proc/${proc.pid}/cgroup`, "utf8").trim()).toBe(`0::/${root.split("/").pop()}/hive`);
		for (const dir of [root, `${root}/workers`]) {
			expect(readFileSync(`${dir}/cgroup.subtree_control`, "utf8").trim().split(" ").sort()).toEqual(expect.arrayContaining(["cpu", "io", "memory", "pids"]));
		}
		// The API needs the token the hive made in its state dir, on loopback too.
		const auth = { authorization: `Bearer ${readFileSync(join(stateDir, "api.token"), "utf8").trim()}` };
		const res = await fetch(`${url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json", ...auth },
			body: JSON.stringify({ id: "inside", command: ["sleep", "30"], cpu: 0.25 }),
		});
		expect(res.status).toBe(201);
		const w = (await res.json()) as { pid: number };
		await until(() => readFileSync(`/proc/${w.pid}/cgroup`, "utf8").includes("/workers/inside"), 10_000, "the worker in its cgroup");
		expect(readFileSync(`${root}/workers/inside/cpu.max`, "utf8").trim()).toBe("25000 100000");
		await fetch(`${url}/v1/workers/inside`, { method: "DELETE", headers: auth });
	} finally {
		if (proc.exitCode === null && proc.signalCode === null) {
			proc.kill("SIGTERM");
			await new Promise((r) => proc.once("exit", r));
		}
		await removeCg(root);
		rmSync(stateDir, { recursive: true, force: true });
	}
}, 300_000);
