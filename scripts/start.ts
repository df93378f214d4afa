// `npm start`: a queen and a local hive in one process, state under .state/
// in the repo (the queen's SQLite file included).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { startHiveDaemon } from "../packages/hive/src/daemon.ts";
import { startQueenDaemon } from "../packages/queen/src/daemon.ts";

// Knobs for tests and for running two side by side: APIARY_STATE_DIR,
// APIARY_QUEEN_LISTEN, APIARY_HIVE_LISTEN, APIARY_CGROUP_ROOT, APIARY_NVIDIA_SMI.
const state = process.env.APIARY_STATE_DIR ?? join(import.meta.dirname, "..", ".state");
mkdirSync(state, { recursive: true });
const log = (msg: string, extra?: object) => process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), msg, ...extra })}\n`);
const queen = await startQueenDaemon({
	listen: process.env.APIARY_QUEEN_LISTEN ?? "127.0.0.1:7070",
	db: join(state, "queen.db"),
	staleAfterMs: 3000,
	evictAfterMs: 90_000,
	token: null,
	log,
});
const hive = await startHiveDaemon({
	listen: process.env.APIARY_HIVE_LISTEN ?? "127.0.0.1:7071",
	name: "local",
	intervalMs: 1000,
	cgroupDriver: "auto",
	cgroupRoot: process.env.APIARY_CGROUP_ROOT,
	stateDir: join(state, "hive"),
	nvidiaSmi: process.env.APIARY_NVIDIA_SMI ?? "nvidia-smi",
	// The hive's API needs a token on loopback too: the one it makes in its state dir.
	queen: queen.url,
	log,
});
const info = hive.hive.driver.info;
process.stdout.write(`Apiary (local): listening on ${queen.url}
  queen          ${queen.url}   events: ${queen.url}/v1/events   db: ${join(state, "queen.db")}
  hive "local"   ${hive.url}   cgroup driver ${info.name}${info.enforced ? "" : " (limits NOT enforced)"}

Try, in another terminal (the hive's API needs the token it made in its state dir):
  export APIARY_HIVE_TOKEN=$(cat ${join(state, "hive", "api.token")})
  npx queen tail
  npx hive spawn --cpu 0.5 --memory 256M -- sh -c 'while :; do :; done'
  npx hive ps
  npx queen workers
  npx queen gpus --free

Ctrl-C stops both; workers keep running and are re-adopted next start.
`);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
	process.once(sig, () => {
		void hive
			.close()
			.then(() => queen.close())
			.then(() => process.exit(0));
	});
}
