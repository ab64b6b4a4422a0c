#!/usr/bin/env bash
# Puts what the arm64 test (test/integration/arm64.test.ts) needs into .arm64/: Debian's
# qemu-user-static and the arm64 C library (OS packages), Bun's arm64 build (the npm package
# @oven/bun-linux-aarch64 of the Bun version in node_modules) and Debian's arm64 nats-server.
# Run by .ci/run; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
dir=.arm64
mkdir -p "$dir"
if ! command -v qemu-aarch64-static >/dev/null 2>&1 || [ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq qemu-user-static libc6-arm64-cross
fi
if [ ! -x "$dir/bun" ]; then
  version=$(node -p 'require("./node_modules/bun/package.json").version')
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "@oven/bun-linux-aarch64@$version" >/dev/null && tar xzf ./*.tgz)
  cp "$tmp/package/bin/bun" "$dir/bun"
  rm -rf "$tmp"
fi
if [ ! -x "$dir/nats-server" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    as_root dpkg --add-architecture arm64
    as_root apt-get update -qq
  fi
  tmp=$(mktemp -d)
  chmod 777 "$tmp"
  (cd "$tmp" && apt-get download -qq nats-server:arm64 2>/dev/null || { as_root apt-get update -qq && apt-get download -qq nats-server:arm64; })
  dpkg-deb -x "$tmp"/nats-server_*_arm64.deb "$tmp/x"
  cp "$tmp/x/usr/sbin/nats-server" "$dir/nats-server"
  rm -rf "$tmp"
fi
qemu-aarch64-static -L /usr/aarch64-linux-gnu "$dir/bun" --version >/dev/null
qemu-aarch64-static -L /usr/aarch64-linux-gnu "$dir/nats-server" --version
echo "arm64: bun $(qemu-aarch64-static -L /usr/aarch64-linux-gnu "$dir/bun" --version) and the nats-server above in $dir/, under qemu-aarch64-static"
