#!/usr/bin/env bash
# Release archives: for each static target (scripts/build-static.sh) a tarball
#   prodigy-VERSION-ARCH-unknown-linux-musl.tar.gz
# holding prodigy-VERSION-ARCH-unknown-linux-musl/{prodigy, README.md, man/*, completions/
# (prodigy.bash, _prodigy, prodigy.fish)}, plus SHA256SUMS, in $CARGO_TARGET_DIR/release/VERSION/
# (target/release/VERSION without CARGO_TARGET_DIR). Prints the table of sizes.
#
#   scripts/release.sh 0.1.0
#
# Reproducible: two runs give byte-identical tarballs. The binaries are built with remapped paths
# (build-static.sh); every entry gets the mtime of the last commit (SOURCE_DATE_EPOCH when set),
# owner 0:0, fixed modes (0755 for the binary and directories, 0644 otherwise); entries are sorted
# by name; gzip writes no name or time (-n).
#
# VERSION must be the version in Cargo.toml (the binary's `--version`); a leading `v` is accepted.
# A target that build-static.sh skips (not installable) has no tarball; that is said loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $# -eq 1 ]] || { echo "usage: scripts/release.sh VERSION" >&2; exit 2; }
version=${1#v}
crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [[ $version != "$crate_version" ]]; then
  echo "release: VERSION $version is not the version in Cargo.toml ($crate_version)" >&2
  exit 2
fi

target_dir=${CARGO_TARGET_DIR:-target}
# Only this run's binaries go in: a target build-static.sh skips leaves no stale copy behind.
rm -f "$target_dir"/static/{x86_64,aarch64}/prodigy
scripts/build-static.sh --no-time

epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
dist=$target_dir/release/$version
stage=$target_dir/release/stage
rm -rf "$dist" "$stage"
mkdir -p "$dist" "$stage"

# Completions are the same for every architecture: made once by a binary this host can run.
comp=$stage/completions
mkdir -p "$comp"
gen=()
if [[ -x $target_dir/static/$(uname -m)/prodigy ]]; then
  gen=("$target_dir/static/$(uname -m)/prodigy")
elif [[ -x $target_dir/static/aarch64/prodigy ]] && command -v qemu-aarch64 >/dev/null 2>&1; then
  gen=(qemu-aarch64 "$target_dir/static/aarch64/prodigy")
else
  echo "release: no built binary runs on this host to write the completions" >&2
  exit 1
fi
"${gen[@]}" help --completions bash > "$comp/prodigy.bash"
"${gen[@]}" help --completions zsh > "$comp/_prodigy"
"${gen[@]}" help --completions fish > "$comp/prodigy.fish"

rows=()
for arch in x86_64 aarch64; do
  bin=$target_dir/static/$arch/prodigy
  triple=$(sed -n 's/^target=//p' "$target_dir/static/$arch/last.txt" 2>/dev/null || true)
  if [[ ! -x $bin || -z $triple ]]; then
    echo "release: SKIPPED: $arch: no static binary was built (see build-static.sh above)" >&2
    continue
  fi
  name=prodigy-$version-$triple
  d=$stage/$name
  mkdir -p "$d/man" "$d/completions"
  cp "$bin" "$d/prodigy"
  cp README.md "$d/"
  cp man/*.[15] "$d/man/"
  cp "$comp"/* "$d/completions/"
  chmod 0755 "$d" "$d/man" "$d/completions" "$d/prodigy"
  find "$d" -type f ! -name prodigy -exec chmod 0644 {} +
  tar --sort=name --format=gnu --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    -C "$stage" -cf - "$name" | gzip -9 -n > "$dist/$name.tar.gz"
  rows+=("$arch $triple $(stat -c %s "$bin") $(stat -c %s "$dist/$name.tar.gz") $name.tar.gz")
done
((${#rows[@]})) || { echo "release: no tarball was made" >&2; exit 1; }
(cd "$dist" && sha256sum -- *.tar.gz > SHA256SUMS)
rm -rf "$stage"

echo
echo "release $version in $dist (entries dated $(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)):"
printf '%-8s %-28s %12s %12s  %s\n' arch target "binary (B)" "tar.gz (B)" sha256
for r in "${rows[@]}"; do
  read -r arch triple bsize tsize file <<< "$r"
  printf '%-8s %-28s %12s %12s  %s\n' "$arch" "$triple" "$bsize" "$tsize" \
    "$(grep -F " $file" "$dist/SHA256SUMS" | cut -c1-16)…"
done
