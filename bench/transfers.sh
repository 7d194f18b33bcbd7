#!/usr/bin/env bash
# End-to-end customer transfers per second through the queue, the worker and the builtin
# core (issue 8, goal >= 2,000/s): see bench/transfers.mjs.
#   bench/transfers.sh [BUILD_DIR] [N] [CUSTOMERS]     (default build-bench, 10000, 50)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-bench}
[[ -x $build/boveda ]] || { echo "transfers.sh: $build/boveda not built" >&2; exit 1; }
BOVEDA_BIN=$build/boveda node bench/transfers.mjs "${2:-10000}" "${3:-50}"
