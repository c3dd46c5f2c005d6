#!/usr/bin/env bash
# Builds the Python payment plugin (app.py, world `plugin` of wit/) into
# plugins/dist/payment-py.wasm with componentize-py (CPython embedded in the component).
# The pinned toolchain is installed once into ~/.cache/eventhost/tools (see plugins/tools.sh);
# the build is skipped when the component is newer than its inputs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../../tools.sh

out=../../dist/payment-py.wasm
wit=../../../wit
if up_to_date "$out" app.py build.sh ../../tools.sh "$wit"; then
    echo "payment-py.wasm is up to date"
    exit 0
fi

bin=$(python_tools)
mkdir -p "$(dirname "$out")"
trap 'rm -f "$out.tmp"' EXIT
# --stub-wasi is not used: the processing delay sleeps through WASI's clocks.
"$bin/componentize-py" -d "$wit" -w plugin componentize app -o "$out.tmp" >/dev/null
# Renamed into place, so the host never loads a half-written component.
mv "$out.tmp" "$out"
