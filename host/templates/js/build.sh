#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-js (SpiderMonkey inside the component). Needs Node.js
# >= 20; the first build installs the pinned toolchain (package.json) into node_modules.
# `--disable http fetch-event` keeps wasi:http out: eventhost links no network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
[ -x node_modules/.bin/componentize-js ] || npm install --no-audit --no-fund --silent
npx --no-install componentize-js app.js --wit wit --world-name plugin \
    --disable http fetch-event --out {{name}}.wasm >/dev/null
echo "built {{name}}.wasm"
