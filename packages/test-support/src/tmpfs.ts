import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A real tmpfs of `size` (e.g. "4m") for disk-full faults; unmount it in afterAll, even when a test failed. */
export function mountTmpfs(size: string): { dir: string; unmount(): void } {
	const dir = mkdtempSync(join(tmpdir(), "apiary-test-tmpfs-"));
	execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir]);
	return {
		dir,
		unmount() {
			try {
				execFileSync("umount", [dir]);
			} catch {
				// Busy (a process still has a file open there): lazily, so it goes when they do.
				execFileSync("umount", ["-l", dir]);
			}
			rmSync(dir, { recursive: true, force: true });
		},
	};
}
