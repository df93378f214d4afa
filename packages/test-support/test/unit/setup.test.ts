import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
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

	// uid 65534 cannot enter a checkout in a 0700 directory (mktemp -d, /root, a home): the script is
	// copied to a folder of its own that every user may read, and run from there, with its cwd there too.
	const runAsNobody = (setup: string) => {
		const which = (t: string) => spawnSync("sh", ["-c", `command -v ${t}`], { encoding: "utf8" }).stdout.trim();
		const bin = mkdtempSync(join(tmpdir(), "apiary-setup-"));
		chmodSync(bin, 0o755);
		try {
			// A PATH with only the shell utilities the script itself uses, so every tool is "missing".
			for (const t of ["bash", "id", "grep"]) symlinkSync(which(t), join(bin, t));
			copyFileSync(setup, join(bin, "setup.sh"));
			chmodSync(join(bin, "setup.sh"), 0o755);
			return spawnSync(which("setpriv"), ["--reuid=65534", "--regid=65534", "--clear-groups", join(bin, "bash"), join(bin, "setup.sh")], {
				encoding: "utf8",
				env: { PATH: bin },
				cwd: bin,
			});
		} finally {
			rmSync(bin, { recursive: true, force: true });
		}
	};

	it("not root and tools missing: names the exact packages to install and changes nothing, wherever the checkout lives (a 0700 directory too)", () => {
		// The checkout as it is, and a copy of its script inside a 0700 directory, as a clone into `mktemp -d` or a home is.
		const home = mkdtempSync(join(tmpdir(), "apiary-home-"));
		chmodSync(home, 0o700);
		try {
			mkdirSync(join(home, "checkout/scripts"), { recursive: true });
			copyFileSync(SETUP, join(home, "checkout/scripts/setup.sh"));
			for (const setup of [SETUP, join(home, "checkout/scripts/setup.sh")]) {
				const r = runAsNobody(setup);
				expect(r.status).toBe(0);
				expect(r.stderr).toMatch(/missing Debian packages: prometheus chromium qemu-system-x86/);
				expect(r.stderr).toMatch(/sudo apt-get install --no-install-recommends prometheus chromium qemu-system-x86/);
				expect(r.stderr).not.toMatch(/installing/);
			}
		} finally {
			rmSync(home, { recursive: true, force: true });
		}
	});
});
