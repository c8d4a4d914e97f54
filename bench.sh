#!/usr/bin/env bash
# Sets up what is missing, then runs termweb's benchmark against a termweb it
# starts itself. Extra arguments go to it, e.g. ./bench.sh --smoke
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh test
exec .venv/bin/python -m bench.run "$@"
