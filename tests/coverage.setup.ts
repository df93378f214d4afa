// npm run coverage (scripts/coverage.ts): every process a test starts (the
// daemons, their spawn helpers, the CLIs) writes its V8 coverage there; the
// test's own process is covered by vitest's provider. A no-op otherwise.
if (process.env.APIARY_COVERAGE_DIR) process.env.NODE_V8_COVERAGE = process.env.APIARY_COVERAGE_DIR;
