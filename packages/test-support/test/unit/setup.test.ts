import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { requireTools } from "../../src/requires.ts";

const SETUP = new URL("../../../../scripts/setup.sh", import.meta.url).pathname;

describe("the fresh-machine set-up", () => {
	it("a tier whose tool is missing fails naming the Debian package", () => {
		expect(() => requireTools(["apiary-no-such-tool"], "apiary-pkg")).toThrow(
			/apiary-no-such-tool not found: install the Debian package apiary-pkg \(sudo apt-get install/,
		);
		expect(() => requireTools(["sh"], "dash")).not.toThrow();
	});

	it("not root and tools missing: names the exact packages to install and changes nothing", () => {
		// A PATH with only the shell utilities the script itself uses, so every tool is "missing".
		const which = (t: string) => spawnSync("sh", ["-c", `command -v ${t}`], { encoding: "utf8" }).stdout.trim();
		const bin = mkdtempSync(join(tmpdir(), "apiary-setup-"));
		chmodSync(bin, 0o755);
		try {
			for (const t of ["bash", "id", "grep"]) symlinkSync(which(t), join(bin, t));
			const r = spawnSync(which("setpriv"), ["--reuid=65534", "--regid=65534", "--clear-groups", join(bin, "bash"), SETUP], {
				encoding: "utf8",
				env: { PATH: bin },
			});
			expect(r.status).toBe(0);
			expect(r.stderr).toMatch(/missing Debian packages: prometheus chromium qemu-system-x86/);
			expect(r.stderr).toMatch(/sudo apt-get install --no-install-recommends prometheus chromium qemu-system-x86/);
			expect(r.stderr).not.toMatch(/installing/);
		} finally {
			rmSync(bin, { recursive: true, force: true });
		}
	});
});
