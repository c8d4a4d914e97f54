#!/usr/bin/env bash
# Installs what termweb needs, idempotently. Usage: scripts/setup.sh [run|test]
#   run  — tmux, a Python virtual environment with termweb, the page's npm assets
#   test — all of that, plus the test tools, redis-server and Chromium for the tests
# Debian packages are installed only when missing, and only when running as root.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
stamps=.setup-stamps
mkdir -p "$stamps"

say() { printf 'termweb setup: %s\n' "$*" >&2; }

# -- Debian packages -----------------------------------------------------------
missing=()
command -v tmux >/dev/null || missing+=(tmux)
command -v npm >/dev/null || missing+=(npm)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "$mode" = test ]; then
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    # The tests start their own redis-server on a free port.
    command -v redis-server >/dev/null || missing+=(redis-server)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing Debian packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]}) and run again"
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# -- Python --------------------------------------------------------------------
[ -x .venv/bin/python ] || python3 -m venv .venv
extras=""
[ "$mode" = test ] && extras="[test]"
want="$(sha256sum pyproject.toml | cut -c1-16)$extras"
if [ "$(cat "$stamps/python" 2>/dev/null)" != "$want" ]; then
    say "installing Python packages into .venv"
    .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
    echo "$want" > "$stamps/python"
fi

# -- The page's JavaScript (xterm.js and its addons, from npm) -----------------
want="$(sha256sum package-lock.json scripts/vendor-assets.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$stamps/npm" 2>/dev/null)" != "$want" ] || [ ! -d static/vendor ]; then
    say "installing npm assets"
    npm ci --no-audit --no-fund --loglevel=error
    bash scripts/vendor-assets.sh
    echo "$want" > "$stamps/npm"
fi
