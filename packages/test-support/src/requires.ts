import { spawnSync } from "node:child_process";

/**
 * Fails (never skips) when a tier's tool is missing, naming the Debian
 * package to install; `npm test` run as root installs them (scripts/setup.sh).
 */
export function requireTools(tools: string[], debianPackage: string): void {
	const missing = tools.filter((t) => spawnSync("sh", ["-c", `command -v ${t}`], { stdio: "ignore" }).status !== 0);
	if (missing.length > 0) {
		throw new Error(
			`${missing.join(" and ")} not found: install the Debian package ${debianPackage} (sudo apt-get install --no-install-recommends ${debianPackage}); npm test run as root installs it (scripts/setup.sh)`,
		);
	}
}
