#!/usr/bin/env bash
# Tests of the JavaScript client (clients/js) against a real Herald server.
# Needs Node >= 20 and npm; builds the server binary unless HERALD_BIN names one.
# CI: clients/js/run-tests.sh (from the repository root or anywhere).
set -euo pipefail
cd "$(dirname "$0")"
if [ -z "${HERALD_BIN:-}" ]; then
  (cd ../.. && cargo build --bin herald --quiet)
fi
npm ci --no-audit --no-fund --loglevel=error
node --test test/*.test.mjs
