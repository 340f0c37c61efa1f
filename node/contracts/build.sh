#!/usr/bin/env bash
# Compiles the C contracts with Debian's clang + lld: build.sh OUT_DIR writes OUT_DIR/NAME.linked.wasm
# for each NAME.c here. lld 14 always exports the memory, which CDT contracts do not, so the node's
# test `vm` (module contracts) strips that export to make NAME.wasm and checks it equals the committed file.
# To refresh the committed .wasm after editing a .c file:
#     REMPART_BLESS=1 cargo test -p rempart-node --test vm
set -euo pipefail
out="${1:?usage: build.sh OUT_DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$out"
for src in "$here"/*.c; do
    name="$(basename "$src" .c)"
    # -ffile-prefix-map and no debug info keep the output independent of the checkout's path.
    clang --target=wasm32 -nostdlib -O2 -ffreestanding -fno-builtin \
        -ffile-prefix-map="$here"=. \
        -Wl,--no-entry -Wl,--export=apply -Wl,--strip-all \
        -o "$out/$name.linked.wasm" "$src"
done
