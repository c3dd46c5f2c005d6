#!/usr/bin/env bash
# Builds {{name}}.wasm (Rust, the wasm32-wasip2 target emits a component directly).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
cp target/wasm32-wasip2/release/{{crate}}.wasm {{name}}.wasm
echo "built {{name}}.wasm"
