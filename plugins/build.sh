#!/usr/bin/env bash
# Builds every guest plugin as a WebAssembly component into plugins/dist/<crate-name>.wasm.
#
#   plugins/build.sh          build (release, wasm32-wasip2) and list the component sizes
#   plugins/build.sh --lint   also check formatting and run clippy with warnings denied
#   plugins/build.sh --rust   only the Rust plugins (the shop's and hello's): no other toolchain
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

lint=false
others=true
for arg in "$@"; do
    case "$arg" in
        --lint) lint=true ;;
        --rust) others=false ;;
        *) echo "usage: $0 [--lint] [--rust]" >&2; exit 2 ;;
    esac
done

target=wasm32-wasip2
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >/dev/null

if $lint; then
    cargo fmt --check
    cargo clippy --release --target "$target" -- -D warnings
    # The unit tests only build natively, so lint them there.
    cargo clippy --all-targets -- -D warnings
fi

cargo build --release --target "$target"

# Plugin crates are the cdylib members; cargo names their output with underscores.
mkdir -p dist
for manifest in */Cargo.toml; do
    grep -q '"cdylib"' "$manifest" || continue
    name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n1)
    cp "target/$target/release/${name//-/_}.wasm" "dist/$name.wasm"
done

# The payment plugin's second rules version is the same crate with a feature: a component of
# its own (different content, so a different version hash) for the hot-swap walkthrough.
cargo build --release --target "$target" -p payment --features rules-v2 --target-dir target/rules-v2
cp "target/rules-v2/$target/release/payment.wasm" dist/payment-v2.wasm

# The same payment rules written in JavaScript (componentize-js; needs Node.js and npm), Python
# (componentize-py), Go (standard Go >= 1.24) and C (clang and wasi-libc). Each is skipped while
# its component is newer than its inputs; tools.sh installs and caches their pinned toolchains
# outside the repository.
if $others; then
    bash js/payment/build.sh
    bash python/payment/build.sh
    bash go/payment/build.sh
    bash c/payment/build.sh
fi

echo "components in plugins/dist:"
for wasm in dist/*.wasm; do
    printf '  %-14s %8d bytes\n' "$(basename "$wasm")" "$(stat -c %s "$wasm")"
done
