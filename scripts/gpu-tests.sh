#!/usr/bin/env bash
# The Rust GPU tests (`#[ignore]`d tests of feature `cuda`: the teacher's and the student's CUDA
# engines against Burn) built here and run on a GPU machine that has no cargo.
#
#   scripts/gpu-tests.sh --build   # on the CPU machine: build, strip and pack them into .gpu/tests/
#   scripts/gpu-tests.sh           # on the GPU machine: run every packed binary's ignored tests
#   ONLY=teacher scripts/gpu-tests.sh          # the binaries whose name matches
#   scripts/gpu-tests.sh -- small_shaped       # arguments after -- go to each test binary
#
# Builds into target-cuda/ as scripts/gpu-build.sh does (its dependencies are shared). Each
# binary is packed as .gpu/tests/<crate>-<test>.xz (about 11 MB: the device tool carries at most
# 64 MiB of ignored files). The tests find their fixtures through the path of the checkout that
# built them, so run them from a checkout at that same path; the runner says so when it is not.
# Exits non-zero when a binary fails or its tests time out (TIMEOUT seconds each, default 600).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out=.gpu/tests
# crate | integration test
suites=(
    "timekd-teacher|cuda_engine"
    "timekd-student|cuda_engine"
)

if [[ "${1:-}" == "--build" ]]; then
    mkdir -p "$out"
    cargo xtask setup >&2  # libhdf5-dev, which the crates' default `store` feature links
    for suite in "${suites[@]}"; do
        IFS='|' read -r crate test <<<"$suite"
        [[ "$crate" =~ ${ONLY:-.} ]] || continue
        echo "gpu-tests: building $crate --test $test (release, cuda)" >&2
        binary="$(CARGO_TARGET_DIR=target-cuda cargo test --release -p "$crate" --features cuda \
            --test "$test" --no-run --message-format json 2>/dev/null |
            python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')"
        [[ -x "$binary" ]] || { echo "gpu-tests: $crate's $test did not build" >&2; exit 1; }
        strip -o "$out/$crate-$test" "$binary"
        echo "$root" >"$out/$crate-$test.checkout"
        xz -T0 -6 -f "$out/$crate-$test"
        echo "gpu-tests: $out/$crate-$test.xz ($(du -h "$out/$crate-$test.xz" | cut -f1))" >&2
    done
    exit 0
fi

[[ "${1:-}" == "--" ]] && shift
shopt -s nullglob
packed=("$out"/*.xz)
((${#packed[@]})) || { echo "gpu-tests: nothing in $out; run scripts/gpu-tests.sh --build first" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
ran=0
for file in "${packed[@]}"; do
    name="$(basename "$file" .xz)"
    [[ "$name" =~ ${ONLY:-.} ]] || continue
    ran=$((ran + 1))
    built_in="$(cat "$out/$name.checkout" 2>/dev/null || echo "$root")"
    if [[ "$built_in" != "$root" ]]; then
        echo "gpu-tests: $name was built in $built_in, this checkout is $root: its fixtures will not be found" >&2
        status=1
        continue
    fi
    xz -dc "$file" >"$work/$name"
    chmod +x "$work/$name"
    echo "== $name" >&2
    timeout "${TIMEOUT:-600}" "$work/$name" --ignored --test-threads 1 --nocapture "$@" || status=1
done
((ran)) || { echo "gpu-tests: no packed binary in $out matches ONLY=${ONLY:-}" >&2; exit 1; }
exit "$status"
