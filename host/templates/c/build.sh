#!/usr/bin/env bash
# Builds {{name}}.wasm: `wit-bindgen c` generates the bindings, clang compiles a wasi-libc
# reactor, wasm-tools wraps it with WASI's preview1 adapter (tools.sh installs them, pinned:
# clang and wasi-libc with apt, the rest into ~/.cache/eventhost/tools).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source tools.sh
clang=$(c_toolchain)
bindgen=$(wit_bindgen_c)
bin=$(python_tools)
adapter=$(preview1_adapter)
rm -rf target && mkdir -p target
"$bindgen" c wit --world plugin --out-dir target/gen >/dev/null
"$clang" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -I target/gen \
    -o target/core.wasm plugin.c target/gen/plugin.c target/gen/plugin_component_type.o
"$bin/wasm-tools" component new target/core.wasm \
    --adapt wasi_snapshot_preview1="$adapter" -o {{name}}.wasm
echo "built {{name}}.wasm"
