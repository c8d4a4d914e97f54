#!/usr/bin/env bash
# Sets up what is missing, then starts termweb on http://127.0.0.1:8765/
# (settings: TERMWEB_* variables, see docs/configuration.md).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh run
exec .venv/bin/gunicorn -c gunicorn.conf.py wsgi:app
