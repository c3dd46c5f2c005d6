#!/usr/bin/env bash
# Browser test of CORS: the coolstore's web page, served from two other origins, calls the
# shop's API (cors.test.mjs). The host runs examples/coolstore/eventhost.toml with
# [server.cors] narrowed to one of those origins, http://127.0.0.1:PAGE_PORT.
#
#   tests/browser/cors.sh
#
# Needs target/debug/eventhost (cargo build --bin eventhost) and the staged plugins
# (scripts/stage-plugins examples/coolstore/plugins catalog cart payment order).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$(pwd)

# A free port for the allowed page's origin; it must be in the config before the host starts.
port=$(node -e 'const s = require("net").createServer();
s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
config="$work/eventhost.toml"
sed -e "s|^origins = \"\\*\"$|origins = [\"http://127.0.0.1:$port\"]|" \
    -e "s|^static_dir = \"web\"$|static_dir = \"$root/examples/coolstore/web\"|" \
    -e "s|^plugins_dir = \"plugins\"$|plugins_dir = \"$root/examples/coolstore/plugins\"|" \
    examples/coolstore/eventhost.toml >"$config"
for expected in "origins = \[\"http://127.0.0.1:$port\"\]" "static_dir = \"/" "plugins_dir = \"/"; do
    grep -q "^$expected" "$config" || { echo "cors.sh: could not set ${expected%% *} in $config" >&2; exit 1; }
done

PAGE_PORT=$port bash scripts/with-shop "$config" bash tests/browser/run.sh cors.test.mjs
