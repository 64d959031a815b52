#!/usr/bin/env bash
# Installs and starts what the test suite uses for real, when it is missing:
#   redis-server  required: the store tests start their own servers (exit 1 when it cannot be had);
#   bubblewrap    best effort: bwrap tests skip with the reason when namespaces are not allowed;
#   docker.io     best effort: dockerd is started in the background (vfs storage, no bridge or
#                 iptables, so it works inside VMs and containers; log ${MN_DOCKERD_LOG:-/tmp/mn-dockerd.log});
#                 docker tests skip with the reason when no daemon can run here.
# Idempotent; needs root (or passwordless sudo) only when something must be installed or started.
set -euo pipefail

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); fi
updated=""

install() {
  if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
    echo "ensure-system-deps: need root to install: $*" >&2
    return 1
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "ensure-system-deps: no apt-get to install: $*" >&2; return 1; }
  echo "ensure-system-deps: installing $*" >&2
  if [ -z "$updated" ]; then "${SUDO[@]}" apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# redis-server: required
if ! command -v redis-server >/dev/null 2>&1; then
  install redis-server || { echo "ensure-system-deps: redis-server is required (install Redis >= 6.2)" >&2; exit 1; }
fi
echo "redis-server: $(redis-server --version | head -n 1)" >&2

# bubblewrap: best effort
command -v bwrap >/dev/null 2>&1 || install bubblewrap || true
if command -v bwrap >/dev/null 2>&1 && bwrap --ro-bind / / --dev /dev --proc /proc --unshare-all --die-with-parent true 2>/dev/null; then
  echo "bubblewrap: ok" >&2
else
  echo "bubblewrap: not usable here (bwrap tests will skip)" >&2
fi

# docker: best effort
docker_ok() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
command -v dockerd >/dev/null 2>&1 || install docker.io || true
if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker: not installed (docker tests will skip)" >&2
  exit 0
fi
if docker_ok; then
  echo "docker: daemon running" >&2
  exit 0
fi
log="${MN_DOCKERD_LOG:-/tmp/mn-dockerd.log}"
echo "docker: starting dockerd (log: $log)" >&2
"${SUDO[@]}" nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker_ok; then echo "docker: ok" >&2; exit 0; fi
  sleep 0.5
done
echo "docker: dockerd did not come up (see $log); docker tests will skip" >&2
exit 0
