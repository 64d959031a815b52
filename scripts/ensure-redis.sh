#!/usr/bin/env bash
# Make sure redis-server is on PATH (the store tests start a real one); install it with apt-get if not.
# Idempotent: does nothing when redis-server is already there. Exits non-zero, saying why, when it cannot.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    echo "redis-server: $(command -v redis-server) ($(redis-server --version | head -n 1))"
    exit 0
fi

fail() {
    echo "ensure-redis: $*" >&2
    echo "ensure-redis: install Redis >= 6.2 by hand (e.g. 'apt-get install redis-server') and put redis-server on PATH" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "redis-server is not on PATH and apt-get is not available on this system"

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "redis-server is not on PATH; installing it needs root (run as root or install sudo)"
    sudo=(sudo -n)
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure-redis: installing redis-server with apt-get"
"${sudo[@]}" apt-get update -q || fail "apt-get update failed"
"${sudo[@]}" apt-get install -y -q --no-install-recommends redis-server || fail "apt-get install redis-server failed"

# The package may start a system service; the tests start their own servers and do not need it.
command -v redis-server >/dev/null 2>&1 || fail "apt-get installed redis-server but it is not on PATH"
echo "redis-server: $(command -v redis-server) ($(redis-server --version | head -n 1))"
