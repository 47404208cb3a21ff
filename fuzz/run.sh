#!/usr/bin/env bash
# Builds and runs a fuzz target with libFuzzer (nightly, SanitizerCoverage), the way
# `cargo fuzz run` does, without needing cargo-fuzz installed:
#   fuzz/run.sh saml_response 300        # target, seconds
# Targets: saml_response, saml_authn_request, user_import, crm_commands, webhook_verify.
# Seeds are read from seeds/<target>; the corpus grows in corpus/<target> and a crashing
# input is written to artifacts/. `cargo +nightly fuzz run <target>` works too where
# cargo-fuzz is installed.
set -euo pipefail
cd "$(dirname "$0")"
target="${1:?target}"; seconds="${2:-60}"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
# --target keeps the coverage flags off build scripts and proc-macros, as cargo-fuzz does.
cargo +nightly build --release --target "$host" --bin "$target"
mkdir -p "corpus/$target" artifacts
seeds=()
[ -d "seeds/$target" ] && seeds=("seeds/$target")
"$CARGO_TARGET_DIR/$host/release/$target" -max_total_time="$seconds" -max_len=65536 \
  -artifact_prefix="artifacts/$target-" "corpus/$target" "${seeds[@]}"
