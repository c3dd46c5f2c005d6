#!/usr/bin/env bash
# Builds the C payment plugin into plugins/dist/payment-c.wasm: `wit-bindgen c` generates the
# bindings of world `plugin` (wit/), Debian's clang compiles a wasi-libc reactor, and wasm-tools
# wraps it in a component with WASI's preview1 adapter (pinned tools: plugins/tools.sh).
# Skipped when the component is newer than its inputs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../../tools.sh

out=../../dist/payment-c.wasm
wit=../../../wit
if up_to_date "$out" ./*.c ./*.h build.sh ../../tools.sh "$wit"; then
    echo "payment-c.wasm is up to date"
    exit 0
fi

clang=$(c_toolchain)
bindgen=$(wit_bindgen_c)
bin=$(python_tools)
adapter=$(preview1_adapter)
work=../../target/c-payment
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
"$bindgen" c "$wit" --world plugin --out-dir "$work/gen" >/dev/null
"$clang" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
    -I "$work/gen" -o "$work/core.wasm" \
    payment.c decision.c json.c "$work/gen/plugin.c" "$work/gen/plugin_component_type.o"
trap 'rm -f "$out.tmp"' EXIT
"$bin/wasm-tools" component new "$work/core.wasm" \
    --adapt wasi_snapshot_preview1="$adapter" -o "$out.tmp"
# Renamed into place, so the host never loads a half-written component.
mv "$out.tmp" "$out"
