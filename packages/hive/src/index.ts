export { buildHiveApp } from "./api/app.ts";
export { main as hiveMain } from "./cli.ts";
export { createDriver, detect } from "./cgroup/detect.ts";
export { startHiveDaemon, type HiveDaemon, type HiveDaemonOptions } from "./daemon.ts";
export { GpuSampler } from "./gpu/sampler.ts";
export { Hive, HiveError } from "./hive.ts";
export { hostFacts } from "./host.ts";
