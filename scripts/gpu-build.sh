#!/usr/bin/env bash
# Build the CUDA release binary of timekd and stage it for the GPU machine.
#
#   scripts/gpu-build.sh                        # about 35 min clean on 2 cores, seconds when warm
#   NICE=19 scripts/gpu-build.sh                # at low priority, beside other builds
#   CARGO_NET_OFFLINE=true scripts/gpu-build.sh # prove that nothing is downloaded
#   PACK=1 scripts/gpu-build.sh                 # .gpu/ holds one .tar.xz instead (see below)
#   FEATURES=fusion scripts/gpu-build.sh        # burn's kernel fusion too: .gpu/timekd-fusion
#                                               # (packed as .gpu/timekd-fusion-gpu.tar.xz)
#
# Both variants build into target-cuda/ (git-ignored, kept between runs: never the CPU build's
# target/; cargo keeps each feature set's artifacts apart, so switching costs a relink),
# then writes to .gpu/ (git-ignored, carried to the GPU machine):
#   .gpu/timekd   the stripped binary, which looks for shared libraries in .gpu/lib first
#   .gpu/lib/     the shared libraries it links beyond glibc (libhdf5 and its dependencies), so
#                 it runs on a machine that has only the NVIDIA driver: libcuda, NVRTC and NVML
#                 are loaded at run time, not linked.
# The device tool carries at most 64 MiB of ignored files; a CUDA binary can be larger (77.5 MB
# was measured with an older dependency set). With PACK=1, .gpu/ holds only
# timekd-gpu.tar.xz; unpack it on the GPU machine with `tar -xJf .gpu/timekd-gpu.tar.xz -C .gpu`.
#
# Route: burn 0.22's CUDA backend (cubecl-cuda 0.11.3) always depends on cubecl-llvm, whose
# build script downloads LLVM. The workspace patches it with vendor/cubecl-llvm-stub, and the
# cli's `cuda` feature puts cubecl-cuda on its CUDA C++/NVRTC (`cpp`) kernel backend. Both are
# checked below before anything is built.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
features="${FEATURES:-cuda}"
case "$features" in
    cuda) name=timekd ;;
    fusion) name=timekd-fusion ;;
    *) echo "gpu-build: FEATURES must be cuda or fusion, got $features" >&2 && exit 1 ;;
esac
target_dir=target-cuda
out=.gpu

fail() {
    echo "gpu-build: $*" >&2
    exit 1
}

# 1. The offline route is in place. (Whole outputs are captured first: `grep -q` closing a pipe
#    early would fail `cargo tree` under pipefail.)
llvm="$(cargo tree -p timekd-cli --features cuda -e normal,build --prefix none -i cubecl-llvm)"
[[ "${llvm%%$'\n'*}" == *"vendor/cubecl-llvm-stub"* ]] ||
    fail "cubecl-llvm is not the stand-in (${llvm%%$'\n'*}); check [patch.crates-io] in Cargo.toml"
cuda_features="$(cargo tree -p timekd-cli --features cuda -e features --prefix none -i cubecl-cuda)"
grep -q 'cubecl-cuda feature "cpp"' <<<"$cuda_features" ||
    fail "cubecl-cuda's \`cpp\` feature is off: the cli's \`cuda\` feature must enable dep:cubecl-cuda"

# 2. What the build needs from the system (libhdf5-dev for the store), installed when missing.
cargo xtask setup >&2

# 3. Build. `cargo rustc` passes the flags to the final link only, so the dependencies built by
#    a plain `cargo build --release -p timekd-cli --features cuda --target-dir target-cuda`
#    are reused. DT_RPATH (not RUNPATH) so that libhdf5's own dependencies are found there too.
echo "gpu-build: building timekd (release, $features) in $target_dir/" >&2
start=$(date +%s)
nice -n "${NICE:-0}" cargo rustc --release -p timekd-cli --bin timekd --features "$features" \
    --target-dir "$target_dir" -- -C 'link-arg=-Wl,--disable-new-dtags,-rpath,$ORIGIN/lib'
echo "gpu-build: built in $(($(date +%s) - start)) s" >&2

# 4. Stage: the stripped binary and the libraries it links, except glibc's own.
bin="$target_dir/release/timekd"
rm -rf "$out/lib"
mkdir -p "$out/lib"
strip -o "$out/$name" "$bin"
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r lib_name path; do
    case "$lib_name" in
        linux-vdso.so.* | ld-linux*.so.* | libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | \
            librt.so.* | libresolv.so.* | libutil.so.* | libnsl.so.* | libanl.so.*) ;;
        *) cp -L "$path" "$out/lib/$lib_name" ;;
    esac
done

# 5. Check the staged copy: every library resolves, from .gpu/lib where bundled, and it runs.
if env -u LD_LIBRARY_PATH ldd "$out/$name" | grep -q 'not found'; then
    env -u LD_LIBRARY_PATH ldd "$out/$name" >&2
    fail "the staged binary has unresolved libraries"
fi
"$out/$name" --version >/dev/null || fail "the staged binary does not run"
size_mib=$(($(du -sk "$out" --exclude='*.tar.xz' | cut -f1) / 1024))
echo "gpu-build: $out/$name ($(du -h "$out/$name" | cut -f1)) and $(find "$out/lib" -type f | wc -l) libraries in $out/lib ($(du -sh "$out/lib" | cut -f1)): $size_mib MiB" >&2

# 6. Optionally pack, for carrying.
rm -f "$out/$name-gpu.tar.xz"
if [[ "${PACK:-0}" == 1 ]]; then
    tar -C "$out" -cf - "$name" lib | xz -T0 -6 >"$out/$name-gpu.tar.xz.tmp"
    rm -rf "$out/$name" "$out/lib"
    mv "$out/$name-gpu.tar.xz.tmp" "$out/$name-gpu.tar.xz"
    echo "gpu-build: packed into $out/$name-gpu.tar.xz ($(du -h "$out/$name-gpu.tar.xz" | cut -f1)); on the GPU machine: tar -xJf $out/$name-gpu.tar.xz -C $out" >&2
elif ((size_mib >= 64)); then
    echo "gpu-build: warning: $out is $size_mib MiB, over the 64 MiB the device tool carries; rerun with PACK=1" >&2
fi
