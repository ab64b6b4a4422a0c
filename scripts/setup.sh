#!/usr/bin/env bash
# Installs what Outpost needs on Debian, Ubuntu or Raspberry Pi OS: nats-server from the OS
# packages (when missing) and the npm dependencies; builds bundles/outpost.js.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v node >/dev/null 2>&1; then
  echo "setup: Node.js 20 or newer is needed (or run the host with Deno or Bun); install it first" >&2
  exit 1
fi
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "setup: installing nats-server from the OS packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server
fi
npm ci --no-audit --no-fund
ns=$(command -v nats-server || echo /usr/sbin/nats-server)
echo "setup: done; $("$ns" --version)"
