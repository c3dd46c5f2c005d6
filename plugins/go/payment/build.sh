#!/usr/bin/env bash
# Builds the Go payment plugin into plugins/dist/payment-go.wasm: standard Go (>= 1.24, for
# `//go:wasmexport`) compiles a wasip1 reactor; wasm-tools embeds world `plugin` of wit/ and
# wraps it in a component with WASI's preview1 adapter (pinned tools: plugins/tools.sh).
# Skipped when the component is newer than its inputs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../../tools.sh

out=../../dist/payment-go.wasm
wit=../../../wit
if up_to_date "$out" ./*.go go.mod build.sh ../../tools.sh "$wit"; then
    echo "payment-go.wasm is up to date"
    exit 0
fi

go=$(go_toolchain)
bin=$(python_tools)
adapter=$(preview1_adapter)
work=../../target/go-payment
mkdir -p "$work" "$(dirname "$out")"
GOOS=wasip1 GOARCH=wasm "$go" build -buildmode=c-shared -trimpath -o "$work/core.wasm" .
"$bin/wasm-tools" component embed "$wit" --world plugin "$work/core.wasm" -o "$work/embedded.wasm"
trap 'rm -f "$out.tmp"' EXIT
"$bin/wasm-tools" component new "$work/embedded.wasm" \
    --adapt wasi_snapshot_preview1="$adapter" -o "$out.tmp"
# Renamed into place, so the host never loads a half-written component.
mv "$out.tmp" "$out"
