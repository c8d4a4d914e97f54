#!/bin/sh
# Copy the third-party files the page loads from node_modules/ into
# static/vendor/ (generated, git-ignored). Run after `npm ci`.
#
# Layout: static/vendor/<package>/<file>, e.g. static/vendor/xterm/xterm.mjs.
# The packages ship self-contained ES modules (lib/*.mjs, no bare imports), so
# static/js/*.js import them by relative URL without a bundler or import map.
set -eu

root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
src="$root/node_modules/@xterm"
dest="$root/static/vendor"

if [ ! -d "$src/xterm" ]; then
    echo "vendor-assets: $src/xterm is missing; run 'npm ci' first" >&2
    exit 1
fi

rm -rf "$dest"
for pkg in xterm addon-fit addon-web-links addon-search addon-unicode11 addon-webgl; do
    mkdir -p "$dest/$pkg"
    cp "$src/$pkg/lib/$pkg.mjs" "$src/$pkg/lib/$pkg.mjs.map" "$src/$pkg/LICENSE" "$dest/$pkg/"
done
cp "$src/xterm/css/xterm.css" "$dest/xterm/"

echo "vendor-assets: copied $(find "$dest" -type f | wc -l) files into static/vendor/"
