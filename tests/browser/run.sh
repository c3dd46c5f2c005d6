#!/usr/bin/env bash
# End-to-end browser test of the Coolstore web shop.
#
#   SHOP_URL=http://127.0.0.1:8080 tests/browser/run.sh [TEST_FILE...]
#
# TEST_FILE defaults to shop.test.mjs (cors.sh runs cors.test.mjs through this script).
# Installs what is missing (Debian's Chromium, the npm packages), then runs the
# test with Node's built-in runner. It does NOT start the shop: the caller starts
# the host and passes its address in SHOP_URL (default http://127.0.0.1:8080).
# Screenshots are written to tests/browser/artifacts/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -x /usr/bin/chromium ]; then
  echo "run.sh: installing chromium" >&2
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run.sh: node and npm are required (Node 20 or newer)" >&2
  exit 1
fi

if [ ! -d node_modules/playwright-core ]; then
  echo "run.sh: installing npm packages" >&2
  npm ci --no-audit --no-fund
fi

export SHOP_URL="${SHOP_URL:-http://127.0.0.1:8080}"
echo "run.sh: testing the shop at $SHOP_URL" >&2
[ $# -gt 0 ] || set -- shop.test.mjs
exec node --test "$@"
