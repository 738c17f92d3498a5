#!/usr/bin/env bash
# run-tap.sh NAME CMD... — runs one TAP-printing command (a C test, e.g. the
# ThreadSanitizer build of the pool thread test) through tap-count.sh, so that
# it ends, like every test target, with the line "N passed, N failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
. spec/support/tap-count.sh
name=$1
shift
TAP_TIMEOUT=${SCOPED_CTEST_TIMEOUT:-600}
tap_run "$name" "$@"
tap_finish
