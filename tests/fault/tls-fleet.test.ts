import { spawn } from "node:child_process";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Daemon, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { makeCerts } from "@apiary/test-support/certs";
import { FakeHive } from "@apiary/test-support/fake-hive";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const QUEEN_BIN = new URL("../../packages/queen/bin/queen.js", import.meta.url).pathname;

// A fleet set up the way docs/security.md says (issue #27): `queen certs
// init` makes the CA, the queen's certificate and each hive's; hives show
// theirs as their credential (--tls-client-ca), each only as itself; a hive
// off loopback serves its API over TLS; queen tail trusts the fleet's CA.

describe("a fleet from queen certs init", () => {
	const dir = tempDir("fault-tls-fleet");
	const certs = join(dir, "certs");
	const roots = [newCgroupRoot(), newCgroupRoot(), newCgroupRoot()];
	const adminToken = join(dir, "admin.token");
	let queen: Daemon;
	const hives: Daemon[] = [];
	const ca = join(certs, "ca.crt");
	beforeAll(async () => {
		const made = await runCli("queen", ["certs", "init", "--dir", certs, "--hive", "cert-a", "--hive", "cert-b"]);
		expect(made.code, made.stderr).toBe(0);
		writeFileSync(adminToken, "tls-fleet-admin-token-0123456789\n");
		queen = await startQueen({
			db: join(dir, "q.db"),
			tokenFile: adminToken,
			extra: ["--tls-cert", join(certs, "queen.crt"), "--tls-key", join(certs, "queen.key"), "--tls-client-ca", ca],
		});
	});
	afterAll(async () => {
		for (const h of hives) await h.stop();
		await queen?.stop();
		for (const r of roots) await removeCgroupRoot(r);
		removeDir(dir);
	});

	/** Each hive the queen knows, and its state (through the CLI, over TLS). */
	const hivesSeen = async (): Promise<Record<string, string>> => {
		const r = await runCli("queen", ["hives", "--queen", queen.url, "--json"], { APIARY_CA: ca, APIARY_TOKEN: "tls-fleet-admin-token-0123456789" });
		return Object.fromEntries((JSON.parse(r.stdout) as { id: string; state: string }[]).map((h) => [h.id, h.state]));
	};

	it("makes a CA, the queen's certificate and one per hive; keys 0600; the queen serves with them", async () => {
		for (const f of ["ca.key", "queen.key", "hives/cert-a.key", "hives/cert-b.key"]) expect(statSync(join(certs, f)).mode & 0o777, f).toBe(0o600);
		for (const f of ["ca.crt", "queen.crt", "hives/cert-a.crt"]) expect(statSync(join(certs, f)).mode & 0o777, f).toBe(0o644);
		expect(queen.url).toMatch(/^https:/);
		const health = await runCli("queen", ["hives", "--queen", queen.url], { APIARY_CA: ca, APIARY_TOKEN: "tls-fleet-admin-token-0123456789" });
		expect(health.code, health.stderr).toBe(0);
		// Run again to add a hive: the CA is kept, so the first hives' certificates stay good.
		const again = await runCli("queen", ["certs", "init", "--dir", certs, "--hive", "cert-c"]);
		expect(again.stdout.trim().split("\n")).toEqual([join(certs, "hives/cert-c.crt"), join(certs, "hives/cert-c.key")]);
	});

	it("a hive whose certificate names it joins with no token at all, and serves its own API over TLS off loopback", async () => {
		const h = await startHive({
			queen: queen.url,
			name: "cert-a",
			stateDir: join(dir, "hive-a"),
			cgroupRoot: roots[0]!,
			extra: ["--ca", ca, "--tls-cert", join(certs, "hives/cert-a.crt"), "--tls-key", join(certs, "hives/cert-a.key"), "--listen", "0.0.0.0:0"],
		});
		hives.push(h);
		expect(h.url).toMatch(/^https:\/\/0\.0\.0\.0:/);
		await until(async () => (await hivesSeen())["cert-a"] === "ready", 15_000, "cert-a ready through its certificate");
		// Its API over TLS: the local commands verify it against the fleet's CA (the certificate names localhost).
		const local = `https://localhost:${h.port}`;
		const ps = await runCli("hive", ["ps", "--hive", local], {
			APIARY_CA: ca,
			APIARY_HIVE_TOKEN: readFileSync(join(dir, "hive-a", "api.token"), "utf8").trim(),
		});
		expect(ps.code, ps.stderr).toBe(0);
		const untrusted = await runCli("hive", ["ps", "--hive", local], { APIARY_CA: "" });
		expect(untrusted.code).toBe(1);
		expect(untrusted.stderr).toMatch(/certificate/i);
	});

	it("a certificate speaks for its own hive only: shown as another id it is refused (4403, audited), and changes nothing", async () => {
		const h = await startHive({
			queen: queen.url,
			name: "cert-b",
			stateDir: join(dir, "hive-b"),
			cgroupRoot: roots[1]!,
			extra: ["--ca", ca, "--tls-cert", join(certs, "hives/cert-a.crt"), "--tls-key", join(certs, "hives/cert-a.key")],
		});
		hives.push(h);
		await until(() => /refused as hive cert-b: this credential speaks for hive cert-a/.test(h.err()), 15_000, "the hive told why");
		expect(queen.err()).toMatch(/hive impersonation refused/);
		// Nothing changed: no cert-b, and cert-a, the real one, undisturbed.
		expect(await hivesSeen()).toEqual({ "cert-a": "ready" });
		const audit = await runCli("queen", ["audit", "--queen", queen.url, "--json"], { APIARY_CA: ca, APIARY_TOKEN: "tls-fleet-admin-token-0123456789" });
		expect(audit.stdout).toMatch(/client certificate CN=cert-a[^"]*".*hive cert-b.*4403|hive cert-b[^\n]*4403/s);
	});

	it("no certificate and no token: the socket is refused (401); a certificate from another CA is no credential either", async () => {
		const none = new FakeHive(queen.url, "cert-none", { ca: readFileSync(ca) });
		await expect(none.opened()).rejects.toThrow(/HTTP 401/);
		none.close();
		const other = makeCerts(dir, "cert-stranger", "other-ca");
		const stranger = new FakeHive(queen.url, "cert-stranger", { ca: readFileSync(ca), cert: readFileSync(other.cert), key: readFileSync(other.key) });
		await expect(stranger.opened()).rejects.toThrow(/HTTP 401/);
		stranger.close();
	});

	it("a queen whose certificate has expired is refused by the CLI and a hive, each saying so", async () => {
		const old = makeCerts(dir, "expired", "expired-ca", 0);
		const stale = await startQueen({ db: join(dir, "expired.db"), extra: ["--tls-cert", old.cert, "--tls-key", old.key] });
		try {
			await new Promise((r) => setTimeout(r, 1100)); // past its notAfter, which is the second it was made
			const r = await runCli("queen", ["hives", "--queen", stale.url], { APIARY_CA: old.ca });
			expect(r.code).toBe(1);
			expect(r.stderr).toMatch(/certificate has expired/);
			const h = await startHive({ queen: stale.url, name: "cert-late", stateDir: join(dir, "hive-late"), cgroupRoot: roots[2]!, extra: ["--ca", old.ca] });
			hives.push(h);
			await until(() => /cannot verify the queen's certificate.*certificate has expired/.test(h.err()), 10_000, "the hive says why");
		} finally {
			await stale.stop();
		}
	});

	it("queen tail trusts the fleet's CA from APIARY_CA (EventSource included)", async () => {
		const tail = spawn(process.execPath, [QUEEN_BIN, "tail", "--queen", queen.url, "--json"], {
			env: { ...process.env, APIARY_CA: ca, APIARY_TOKEN: "tls-fleet-admin-token-0123456789" },
		});
		let out = "";
		tail.stdout.on("data", (b: Buffer) => (out += b));
		try {
			await until(() => /"type":"snapshot"/.test(out), 15_000, "a snapshot over TLS");
		} finally {
			tail.kill();
		}
	});
});
