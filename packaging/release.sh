#!/usr/bin/env bash
# Builds the release archives: one samgw_VERSION_OS_ARCH.tar.gz per target
# (a static binary, README.md, LICENSE, samgw.example.yaml, docs/, scripts/,
# the systemd unit)
# and SHA256SUMS over them, in OUT (default dist/).
#
#   packaging/release.sh v1.2.0                # every target
#   TARGETS=linux/amd64 packaging/release.sh   # one target (what CI checks)
#
# The version is stamped into the binary (`samgw version` prints it);
# without an argument it is the git description of HEAD. The build flags
# are the Dockerfile's: CGO off, -trimpath, stripped, -X main.version.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
targets=${TARGETS:-"linux/amd64 linux/arm64 darwin/amd64 darwin/arm64"}
out=${OUT:-dist}

rm -rf "$out" && mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for target in $targets; do
  os=${target%/*}; arch=${target#*/}
  name="samgw_${version}_${os}_${arch}"
  mkdir -p "$work/$name"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
    -ldflags "-s -w -X main.version=$version" -o "$work/$name/samgw" ./cmd/samgw
  cp -r README.md LICENSE samgw.example.yaml docs scripts "$work/$name/"
  cp packaging/systemd/samgw.service "$work/$name/"
  # Reproducible archives: fixed owner, order and times.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2026-01-01 00:00:00Z' \
    -C "$work" -czf "$out/$name.tar.gz" "$name"
  echo "built $out/$name.tar.gz"
done
(cd "$out" && sha256sum ./*.tar.gz | sed 's| \./| |' > SHA256SUMS)
echo "wrote $out/SHA256SUMS"
