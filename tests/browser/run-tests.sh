#!/usr/bin/env bash
# Browser tests of the demo chat page (/) in headless Chromium (tests/browser).
# Needs Node >= 20, npm and Debian's chromium (apt-get install -y chromium; CHROMIUM_PATH
# names another); builds the server binary unless HERALD_BIN names one.
# CI: tests/browser/run-tests.sh (from the repository root or anywhere).
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${HERALD_BIN:-}" ]; then
  (cd ../.. && cargo build --bin herald --quiet)
fi
npm ci --no-audit --no-fund --loglevel=error
node --test --test-concurrency=1 ./*.test.mjs
