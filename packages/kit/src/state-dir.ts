import { join } from "node:path";

/**
 * Where a daemon keeps its state: $APIARY_STATE_DIR, /var/lib/apiary/<name>
 * as root, else ~/.local/state/apiary/<name>. The queen's database lives in
 * its state dir.
 */
export function defaultStateDir(name: "hive" | "queen", env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.()): string {
	return env.APIARY_STATE_DIR ?? (uid === 0 ? `/var/lib/apiary/${name}` : join(env.HOME ?? ".", ".local/state/apiary", name));
}
