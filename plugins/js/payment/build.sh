#!/usr/bin/env bash
# Builds the JavaScript payment plugin (app.js, world `plugin` of wit/) into
# plugins/dist/payment-js.wasm with componentize-js (SpiderMonkey embedded in the component).
#
# `--disable http fetch-event` leaves out StarlingMonkey's fetch support: with it the component imports
# wasi:http, which the host does not link. Needs Node.js >= 20 and npm; the first run installs the
# pinned toolchain from package-lock.json. Skipped when the component is newer than its inputs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

out=../../dist/payment-js.wasm
wit=../../../wit

if [ -f "$out" ] && [ -z "$(find app.js package-lock.json build.sh "$wit" -newer "$out" -print -quit)" ]; then
    echo "payment-js.wasm is up to date"
    exit 0
fi

command -v npm >/dev/null || {
    echo "plugins/js/payment needs Node.js >= 20 and npm to build $out" >&2
    exit 1
}
[ -x node_modules/.bin/componentize-js ] || npm ci --no-audit --no-fund

mkdir -p "$(dirname "$out")"
trap 'rm -f "$out.tmp"' EXIT
npx --no-install componentize-js app.js \
    --wit "$wit" \
    --world-name plugin \
    --disable http fetch-event \
    --out "$out.tmp"
# Renamed into place, so the host never loads a half-written component.
mv "$out.tmp" "$out"
