#!/usr/bin/env bash
# Build statically linked release binaries, one per target, at
# $CARGO_TARGET_DIR/static/ARCH/prodigy (target/static/ARCH/prodigy without CARGO_TARGET_DIR),
# and measure each: size, `file`, `ldd`, and the median wall time of `prodigy --version` (the
# aarch64 binary under `qemu-aarch64`, from Debian's `qemu-user`).
#
#   scripts/build-static.sh                 # x86_64 and aarch64
#   scripts/build-static.sh x86_64          # one of them
#   scripts/build-static.sh --no-time ...   # skip the --version timing (release.sh uses this)
#
# Targets: x86_64-unknown-linux-musl and aarch64-unknown-linux-musl. A missing musl target is
# installed with `rustup target add` when rustup is there. When it cannot be installed:
# x86_64 falls back to glibc with `-C target-feature=+crt-static` (larger) and says so; aarch64
# is SKIPPED with a loud line (a glibc cross build needs an aarch64 glibc and linker; not tried).
# Both link with rust-lld (shipped with rustup's toolchain): no cross gcc is needed for aarch64.
#
# The release profile `static` in Cargo.toml does the size tuning (LTO, one codegen unit,
# stripped, abort on panic, opt-level "z"). Paths are remapped (--remap-path-prefix: the
# checkout, $CARGO_HOME, the target directory) so the bytes do not depend on where the build ran;
# scripts/release.sh relies on that.
#
# Limits (the design card, since issue 24 added the workflow language and issue 26 compression):
# x86_64 under 2.4 MiB, aarch64 under 2 MiB; native --version under 1 ms (issue 16). Each
# ARCH/last.txt keeps the previous build's numbers, shown side by side.
#
# Exit status: non-zero if a build fails or a binary is not static; a missed size or time limit
# and a skipped target are reported, not errors.
set -euo pipefail
cd "$(dirname "$0")/.."

time_it=yes
archs=()
for a in "$@"; do
  case $a in
    --no-time) time_it=no ;;
    x86_64 | aarch64) archs+=("$a") ;;
    *) echo "build-static: unknown argument '$a' (x86_64, aarch64, --no-time)" >&2; exit 2 ;;
  esac
done
((${#archs[@]})) || archs=(x86_64 aarch64)

target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
target_abs=$(cd "$target_dir" && pwd)
out=$target_dir/static
runs=50
max_us=1000
src_abs=$(pwd)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
remap="--remap-path-prefix=$src_abs=. --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$target_abs=/target"

# MiB limits in bytes ("under 2.4 MiB", "under 2 MiB").
max_bytes() { case $1 in x86_64) echo 2516582 ;; aarch64) echo 2097152 ;; esac; }

has_std() { [[ -n $(ls "$(rustc --print target-libdir --target "$1" 2>/dev/null)"/libstd-*.rlib 2>/dev/null) ]]; }

ensure_target() {
  has_std "$1" && return 0
  if command -v rustup >/dev/null 2>&1; then
    echo "build-static: rustup target add $1"
    rustup target add "$1" >&2 || true
  fi
  has_std "$1"
}

median_us() {
  local -a t=()
  local i a b
  if command -v hyperfine >/dev/null 2>&1; then
    hyperfine -N --runs "$runs" --warmup 5 --export-json "$out/hyperfine.json" "$*" >/dev/null
    python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["results"][0]["median"]*1e6))' \
      "$out/hyperfine.json"
    return
  fi
  for i in 1 2 3 4 5; do "$@" >/dev/null; done  # warm the page cache
  for ((i = 0; i < runs; i++)); do
    a=${EPOCHREALTIME/[.,]/}; "$@" >/dev/null; b=${EPOCHREALTIME/[.,]/}
    t+=($((b - a)))
  done
  printf '%s\n' "${t[@]}" | sort -n | sed -n "$((runs / 2))p"
}

mkdir -p "$out"
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
summary=()
failed=0

for arch in "${archs[@]}"; do
  triple=$arch-unknown-linux-musl
  flags=$remap
  note=""
  if ! ensure_target "$triple"; then
    if [[ $arch == x86_64 ]] && has_std x86_64-unknown-linux-gnu; then
      echo "build-static: NOTE: $triple cannot be installed; building glibc" \
        "x86_64-unknown-linux-gnu with +crt-static instead (larger, over 2 MiB)" >&2
      triple=x86_64-unknown-linux-gnu
      flags="$flags -C target-feature=+crt-static"
      note=" (glibc fallback)"
    else
      echo "build-static: SKIPPED: $arch: the $triple target cannot be installed" \
        "(rustup target add $triple)" >&2
      summary+=("$(printf '%-8s %-28s SKIPPED (target not installed)' "$arch" "$triple")")
      continue
    fi
  fi
  echo "build-static: cargo build --profile static --target $triple"
  # RUSTFLAGS with --target applies to the target only, not to build scripts or proc macros.
  # Both musl targets link with rust-lld (shipped with rustup's toolchain), which links musl's
  # self-contained CRT objects: no aarch64 gcc is needed, and x86_64 gets identical-code folding
  # (below), which GNU ld lacks. The glibc fallback keeps the system's cc.
  env_linker=()
  case $triple in
    aarch64-unknown-linux-musl)
      [[ -n ${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-} ]] ||
        env_linker=(CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld) ;;
    x86_64-unknown-linux-musl)
      [[ -n ${CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER:-} ]] ||
        env_linker=(CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld) ;;
  esac
  # Relative relocations packed (DT_RELR, 8 bytes a run instead of 24 a pointer): the static-pie
  # keeps its ASLR and loses about 64 KiB of .rela.dyn (x86_64: 2,552,568 -> 2,487,104 bytes).
  # musl's static-pie start applies RELR (musl >= 1.2.4); the --version check below runs it.
  # rust-lld folds identical functions (--icf=all): 19.7 KB of monomorphized copies on aarch64,
  # 33 KB on x86_64 (issue 25's ninth round). Rust promises no distinct addresses for distinct
  # functions (std::ptr::fn_addr_eq), and rustc's MSVC targets fold the same way (/OPT:ICF).
  case $triple in
    x86_64-unknown-linux-musl | aarch64-unknown-linux-musl)
      flags="$flags -C link-arg=-zpack-relative-relocs -C link-arg=--icf=all" ;;
  esac
  env "${env_linker[@]}" RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$flags" \
    cargo build --profile static --locked --target "$triple"

  dir=$out/$arch
  mkdir -p "$dir"
  cp "$target_dir/$triple/static/prodigy" "$dir/prodigy.new"
  mv "$dir/prodigy.new" "$dir/prodigy"
  bin=$dir/prodigy

  size=$(stat -c %s "$bin")
  ldd_out=$(ldd "$bin" 2>&1 | sed "s/^[[:space:]]*//" || true)
  file_out=$(file -b "$bin")
  # Static: `file` says so (it reads the ELF on any host), and ldd finds nothing to load (on a
  # foreign architecture ldd says "not a dynamic executable" too).
  static=NO
  case $file_out in
    *"statically linked"* | *"static-pie linked"*)
      case $ldd_out in
        *"not a dynamic executable"* | *"statically linked"*) static=yes ;;
      esac ;;
  esac

  run=("$bin")
  if [[ $arch != "$(uname -m)" ]]; then
    if command -v "qemu-$arch" >/dev/null 2>&1; then
      run=("qemu-$arch" "$bin")
    else
      run=()
      echo "build-static: SKIPPED: running the $arch binary: qemu-$arch is not installed" \
        "(apt-get install qemu-user)" >&2
    fi
  fi
  version=- version_us=- true_us=-
  if ((${#run[@]})); then
    version=$("${run[@]}" --version)
    if [[ $time_it == yes ]]; then
      version_us=$(median_us "${run[@]}" --version)
      ((${#run[@]} > 1)) || true_us=$(median_us /bin/true)  # any process's cost, for scale
    fi
  fi

  prev_size=- prev_us=- prev_when=-
  if [[ -f $dir/last.txt ]]; then
    while IFS='=' read -r k v; do
      case $k in
        size_bytes) prev_size=$v ;;
        version_median_us) prev_us=$v ;;
        built) prev_when=$v ;;
      esac
    done < "$dir/last.txt"
  fi
  limit=$(max_bytes "$arch")
  size_ok=ok; ((size < limit)) || size_ok=MISSED
  us_target="< $max_us" us_ok=-
  if [[ ${#run[@]} -gt 1 ]]; then
    us_target="(qemu, none)"
  elif [[ $version_us != - ]]; then
    us_ok=ok; ((version_us < max_us)) || us_ok=MISSED
  fi

  echo
  echo "binary:  $bin ($version, commit $rev, $triple$note)"
  echo "ldd:     $ldd_out"
  echo "file:    $file_out"
  printf '%-26s %14s %14s %14s %8s\n' "" previous current target verdict
  printf '%-26s %14s %14s %14s %8s\n' "size (bytes)" "$prev_size" "$size" "< $limit" "$size_ok"
  printf '%-26s %14s %14s %14s %8s\n' "--version median (us)" "$prev_us" "$version_us" "$us_target" "$us_ok"
  printf '%-26s %14s %14s %14s %8s\n' "static" "" "$static" "yes" "$([[ $static == yes ]] && echo ok || echo MISSED)"
  printf '%-26s %14s %14s\n' "/bin/true median (us)" "" "$true_us"
  printf '%-26s %21s %21s\n' "built" "$prev_when" "$now"
  echo

  cat > "$dir/last.txt" <<EOF
size_bytes=$size
version_median_us=$version_us
static=$static
target=$triple
built=$now
commit=$rev
EOF
  summary+=("$(printf '%-8s %-28s %10s %7s MiB  < %7s %-6s static=%-3s --version %s us' \
    "$arch" "$triple" "$size" "$(awk -v s="$size" 'BEGIN{printf "%.3f", s/1048576}')" \
    "$(awk -v s="$limit" 'BEGIN{printf "%.2f", s/1048576}')" "$size_ok" "$static" "$version_us")")
  if [[ $static != yes ]]; then
    echo "build-static: $bin is not statically linked" >&2
    failed=1
  fi
done

echo "summary (commit $rev):"
printf '  %s\n' "${summary[@]}"
exit $failed
