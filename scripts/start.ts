// `npm start`: a local hive for development, state under .state/ in the repo.
// The queen half of `npm start` arrives with the queen (see docs/STATUS.md).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { startHiveDaemon } from "../packages/hive/src/daemon.ts";

const stateDir = join(import.meta.dirname, "..", ".state", "hive");
mkdirSync(stateDir, { recursive: true });
const log = (msg: string, extra?: object) => process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), msg, ...extra })}\n`);
const d = await startHiveDaemon({
	listen: process.env.APIARY_HIVE_LISTEN ?? "127.0.0.1:7071",
	name: "local",
	intervalMs: 1000,
	cgroupDriver: "auto",
	stateDir,
	nvidiaSmi: process.env.APIARY_NVIDIA_SMI ?? "nvidia-smi",
	token: null,
	log,
});
const info = d.hive.driver.info;
process.stdout.write(`Apiary (local)
  hive "local"  ${d.url}   cgroup driver ${info.name}${info.enforced ? "" : " (limits NOT enforced)"}
  state         ${stateDir}

Try:
  npx hive spawn --cpu 0.5 --memory 256M -- sh -c 'while :; do :; done'
  npx hive ps
  curl ${d.url}/v1/snapshot

Ctrl-C stops the hive; workers keep running and are re-adopted next start.
`);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
	process.once(sig, () => {
		void d.close().then(() => process.exit(0));
	});
}
