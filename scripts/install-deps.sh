#!/usr/bin/env bash
# Installs the Debian packages nines needs to build and test. Idempotent: when
# nothing is missing it prints nothing and touches nothing.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config clang llvm libclang-rt-14-dev
  libuv1-dev libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev
  liblmdb-dev lmdb-utils libssl-dev libssh2-1-dev libyaml-dev libpq-dev libjemalloc-dev
  libfuse3-dev fuse3 postgresql prometheus-alertmanager etcd-server etcd-client
  perl awscli curl procps iproute2 nftables openssh-server openssh-client
  libnetfilter-queue-dev iptables
  chromium fonts-dejavu-core
)

missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/nines-install-deps.XXXXXX)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  echo "install-deps: apt-get failed; its output:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
rm -f "$log"
