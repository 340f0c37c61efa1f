#!/usr/bin/env bash
# The one test command of rempart: `bash tests/run.sh` (CI runs it through .ci/run).
#
# It works on a fresh Debian bookworm machine that has only the Rust toolchain: it installs what
# the tests need (Debian packages with --no-install-recommends, the npm clients into
# tests/clients/node_modules from the committed lock), then checks formatting, runs clippy with
# warnings denied, runs the whole test suite, and smoke-runs every fuzz target when cargo-fuzz
# and a nightly toolchain are there. Every step is printed with its duration; any failure stops
# the run with a non-zero status. CI=true (left as the caller set it) turns "skip because X is
# missing" into "install X" or "fail", as ../shared/TESTING.md requires.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# One build per run: incremental state would only cost disk (GBs with wasmtime in the tree).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Seconds each fuzz target runs in the smoke run; raise it to fuzz longer (README.md).
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

# ---- Debian packages the tests need ----------------------------------------------------------
# One entry per package: "<debian package>:<command on PATH, or absolute path of a file, that
# shows it is installed>". Only missing ones are installed. Later issues add theirs here
# (wireguard-go, wireguard-tools, haproxy, ...).
DEBIAN_PACKAGES=(
    "ca-certificates:/etc/ssl/certs/ca-certificates.crt" # npm registry over TLS
    "curl:curl"                                          # health probes in end-to-end tests
    "pkg-config:pkg-config"                              # -sys crates that find C libraries
    "nodejs:node"                                        # eosjs / wharfkit cross-check
    "npm:npm"                                            # installs tests/clients
    "softhsm2:/usr/lib/softhsm/libsofthsm2.so"           # signer: PKCS#11 HSM tests
    "opensc:pkcs11-tool"                                 # signer: inspecting SoftHSM2 tokens
    "pcscd:pcscd"                                        # admin: PC/SC daemon for YubiKeys
    "vsmartcard-vpcd:/usr/lib/pcsc/drivers/serial/libifdvpcd.so" # admin: virtual card reader
    "libpcsclite-dev:/usr/include/PCSC/winscard.h"      # admin: the yubikey crate links it
    "pcsc-tools:pcsc_scan"                               # admin: inspecting readers by hand
    "opensc-pkcs11:/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so" # admin: PIV over PKCS#11
    "clang:clang"                                        # admin: tests/vcard's C dependencies
    "libclang-dev:/usr/lib/llvm-14/lib/libclang.so"      # admin: bindgen in tests/vcard
    "lld:wasm-ld"                                        # node: links the C contracts (clang too) to wasm32
    "wireguard-go:wireguard-go"                          # private network: userspace WireGuard
    "wireguard-tools:wg"                                 # private network: wg set / wg show in tests
    "iproute2:ip"                                        # private network: namespaces, veth, addresses
    "slowhttptest:slowhttptest"                          # gateway: slowloris / slow body attack tests
    "testssl.sh:testssl"                                 # gateway: TLS audit test
    "pebble:pebble"                                      # gateway: ACME test CA (certificates over HTTP-01)
    "redis-server:redis-server"                          # gateway: limits shared between gateways
    "etcd-server:etcd"                                   # signer: the guard shared by standby signers
    "python3-h2:/usr/lib/python3/dist-packages/h2/__init__.py" # gateway: rapid-reset, CONTINUATION flood
    "python3-venv:/usr/lib/python3.11/ensurepip/__init__.py" # node: pyntelope's own virtualenv
)
# -----------------------------------------------------------------------------------------------

STEP_NAMES=()
STEP_SECONDS=()
STEP_NAME=""
STEP_START=0
RUN_START=$SECONDS
TESTS_PASSED=0
TESTS_FAILED=0

step() {
    end_step
    STEP_NAME="$1"
    STEP_START=$SECONDS
    printf '\n==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$STEP_NAME"
}

end_step() {
    if [[ -n "$STEP_NAME" ]]; then
        STEP_NAMES+=("$STEP_NAME")
        STEP_SECONDS+=($((SECONDS - STEP_START)))
        STEP_NAME=""
    fi
}

LOG_DIR="$(mktemp -d)"
on_exit() {
    local status=$?
    rm -rf "$LOG_DIR"
    if [[ $status -ne 0 ]]; then
        printf '\nFAILED (exit status %d) during: %s\n' "$status" "${STEP_NAME:-setup}" >&2
    fi
}
trap on_exit EXIT

is_ci() { [[ "${CI:-}" == "true" ]]; }

present() {
    local probe="$1"
    if [[ "$probe" == /* ]]; then [[ -e "$probe" ]]; else command -v "$probe" >/dev/null 2>&1; fi
}

step "Debian packages"
missing=()
for entry in "${DEBIAN_PACKAGES[@]}"; do
    package="${entry%%:*}"
    probe="${entry#*:}"
    if present "$probe"; then
        echo "  $package: present ($probe)"
    else
        echo "  $package: missing ($probe not found)"
        missing+=("$package")
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    as_root=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            as_root=(sudo)
        else
            echo "error: these Debian packages are missing and this is not root: ${missing[*]}" >&2
            echo "       install them (apt-get install --no-install-recommends) and run again" >&2
            exit 1
        fi
    fi
    echo "  installing: ${missing[*]}"
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "  node $(node --version), npm $(npm --version)"

step "npm clients (npm ci in tests/clients)"
(cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
(cd tests/clients && npm ls --depth=0)

step "pyntelope 0.8.6 (a virtualenv in target/: it needs pydantic 1)"
python3 -m venv target/pyntelope-venv
target/pyntelope-venv/bin/pip install --quiet --disable-pip-version-check pyntelope==0.8.6
export PYNTELOPE_PYTHON="$ROOT/target/pyntelope-venv/bin/python"

step "boringtun-cli 0.7.1 (the userspace WireGuard that [wireguard] userspace = \"auto\" prefers)"
# Built from crates.io (BSD-3-Clause; no Debian package): about 1.5 min once per target dir.
export PATH="$ROOT/target/boringtun/bin:$PATH"
if ! command -v boringtun-cli >/dev/null 2>&1; then
    cargo install boringtun-cli --version 0.7.1 --locked --root "$ROOT/target/boringtun"
fi
boringtun-cli --version

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace --locked"
    # The workspace build makes every program the tests start; REMPART_UP_NO_BUILD stops `rempart
    # up` and the test helpers from building them again with one package's features, which
    # relinked the binaries under tests running them (a signer's /proc/PID/exe went "(deleted)").
    REMPART_UP_NO_BUILD=1 cargo nextest run --workspace --locked --no-fail-fast 2>&1 |
        tee "$LOG_DIR/nextest.log"
    # "Summary [ 1.2s] 57 tests run: 57 passed, 0 skipped" (failures add "N failed").
    summary="$(grep -E '^ *Summary \[' "$LOG_DIR/nextest.log" | tail -n 1 || true)"
    passed="$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary")"
    failed="$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")"
    TESTS_PASSED=$((TESTS_PASSED + ${passed:-0}))
    TESTS_FAILED=$((TESTS_FAILED + ${failed:-0}))

    # nextest does not run documentation tests.
    step "cargo test --workspace --doc --locked"
    cargo test --workspace --doc --locked 2>&1 | tee "$LOG_DIR/doctest.log"
else
    step "cargo test --workspace --locked (cargo-nextest not installed)"
    REMPART_UP_NO_BUILD=1 cargo test --workspace --locked --no-fail-fast 2>&1 |
        tee "$LOG_DIR/doctest.log"
fi
# "test result: ok. 4 passed; 0 failed; ..." once per test binary.
while read -r passed failed; do
    TESTS_PASSED=$((TESTS_PASSED + passed))
    TESTS_FAILED=$((TESTS_FAILED + failed))
done < <(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' \
    "$LOG_DIR/doctest.log")

# `rempart admin` links libpcsclite, so it is a feature outside the default build; its ceremony
# test drives virtual PIV cards (tests/vcard, built by the test) through a private pcscd.
step "rempart --features yubikey: clippy and the YubiKey ceremony tests"
cargo clippy -p rempart -p rempart-signer --features yubikey --all-targets --locked -- -D warnings
cargo test --release --locked --manifest-path tests/vcard/Cargo.toml \
    --target-dir "${CARGO_TARGET_DIR:-target}/vcard" 2>&1 | tee "$LOG_DIR/vcard.log"
cargo test -p rempart --features yubikey --locked --test admin --test admin_signer \
    --test admin_block_key --test admin_rotation 2>&1 |
    tee "$LOG_DIR/admin.log"
while read -r passed failed; do
    TESTS_PASSED=$((TESTS_PASSED + passed))
    TESTS_FAILED=$((TESTS_FAILED + failed))
done < <(cat "$LOG_DIR/vcard.log" "$LOG_DIR/admin.log" |
    sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p')

step "fuzz smoke runs (${FUZZ_SECONDS} s per target)"
fuzz_ready=false
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "  skipped: no nightly toolchain (cargo-fuzz needs one; rustup toolchain install nightly)"
elif cargo +nightly fuzz --help >/dev/null 2>&1; then
    fuzz_ready=true
elif is_ci; then
    echo "  cargo-fuzz is missing and CI=true: installing it"
    cargo install cargo-fuzz --locked
    fuzz_ready=true
else
    echo "  skipped: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
fi
if $fuzz_ready; then
    # cargo-fuzz has no --locked: refuse a fuzz/Cargo.lock that would need to change.
    if ! cargo +nightly metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml \
        >/dev/null; then
        echo "error: fuzz/Cargo.lock is out of date (core's dependencies changed?); update it with" >&2
        echo "       cargo +nightly metadata --manifest-path fuzz/Cargo.toml >/dev/null" >&2
        echo "       and commit fuzz/Cargo.lock" >&2
        exit 1
    fi
    (cd fuzz && cargo +nightly fuzz build)
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
    for target in "${targets[@]}"; do
        echo "  -- $target"
        corpus=("corpus/$target")
        mkdir -p "fuzz/corpus/$target"
        if [[ -d "fuzz/seeds/$target" ]]; then corpus+=("seeds/$target"); fi
        log="$LOG_DIR/fuzz-$target.log"
        if (cd fuzz && cargo +nightly fuzz run "$target" "${corpus[@]}" -- \
            -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 >"$log" 2>&1); then
            grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" |
                sed 's/^/     /' || true
        else
            # The panic or sanitizer report, then libFuzzer's summary of the failing input.
            grep -E -A3 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$log" |
                head -n 24 >&2 || true
            grep -E -A2 '^(SUMMARY|Failing input|Output of)' "$log" | head -n 16 >&2 || true
            echo "error: fuzz target $target failed; a crashing input is in fuzz/artifacts/$target" >&2
            echo "       reproduce: cd fuzz && cargo +nightly fuzz run $target <that file>" >&2
            exit 1
        fi
    done
fi
end_step

printf '\n==> durations\n'
for i in "${!STEP_NAMES[@]}"; do
    printf '  %5d s  %s\n' "${STEP_SECONDS[$i]}" "${STEP_NAMES[$i]}"
done
printf '  %5d s  total\n' $((SECONDS - RUN_START))
echo
echo "tests: ${TESTS_PASSED} passed, ${TESTS_FAILED} failed"
