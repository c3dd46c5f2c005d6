#!/usr/bin/env bash
# Builds {{name}}.wasm: standard Go (>= 1.24) compiles a wasip1 reactor; wasm-tools embeds world
# `plugin` of wit/ and wraps it with WASI's preview1 adapter (tools.sh installs both, pinned,
# into ~/.cache/eventhost/tools).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source tools.sh
go=$(go_toolchain)
bin=$(python_tools)
adapter=$(preview1_adapter)
mkdir -p target
GOOS=wasip1 GOARCH=wasm "$go" build -buildmode=c-shared -trimpath -o target/core.wasm .
"$bin/wasm-tools" component embed wit --world plugin target/core.wasm -o target/embedded.wasm
"$bin/wasm-tools" component new target/embedded.wasm \
    --adapt wasi_snapshot_preview1="$adapter" -o {{name}}.wasm
echo "built {{name}}.wasm"
