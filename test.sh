#!/usr/bin/env bash
# Sets up what is missing (test tools and Chromium included), then runs the
# whole test suite. Extra arguments go to pytest, e.g. ./test.sh -k resize
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh test
# pytest exits 5 when it collected no test: that fails here like any other error.
exec .venv/bin/pytest "$@"
