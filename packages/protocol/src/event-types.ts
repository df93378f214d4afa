// The event stream's types, alone in a module so the CLIs can name them
// without loading the schema library.
export const EVENT_TYPES = [
	"hive.joined",
	"hive.stale",
	"hive.lost",
	"hive.restarted",
	"hive.left",
	"hive.cordoned",
	"hive.draining",
	"hive.drained",
	"hive.uncordoned",
	"worker.spawned",
	"worker.updated",
	"worker.exited",
	"worker.evicted",
	"gpu.updated",
	"claim.created",
	"claim.released",
	"placement.failed",
	"snapshot",
	"stream.lagged",
	"stream.reset",
] as const;
