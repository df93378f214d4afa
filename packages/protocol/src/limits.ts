// Bounds of what a spawn may ask for, shared by the API's schema and the
// CLIs (which check them before sending; this module loads no schema library).

/** The smallest memory limit accepted: below it a worker cannot even exec. */
export const MIN_MEMORY_BYTES = 4 * 1024 * 1024;
/** The largest memory limit accepted (1 PiB): far above any host, and written to the kernel as plain digits. */
export const MAX_MEMORY_BYTES = 2 ** 50;
/** Timeouts up to 30 days, honoured exactly (longer than one timer can wait: see kit's longTimeout). */
export const MAX_TIMEOUT_MS = 30 * 24 * 3600 * 1000;
/** The longest grace period a stop may give before SIGKILL. */
export const MAX_GRACE_MS = 3600 * 1000;
/** Signals a worker may ask to be stopped with. */
export const STOP_SIGNALS = ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"] as const;
