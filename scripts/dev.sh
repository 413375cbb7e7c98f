#!/usr/bin/env bash
# Sets up this machine for vmpod (Debian, as root) and then runs it or tests it.
#   scripts/dev.sh run    install, build, start vmpod with its default configuration
#   scripts/dev.sh test   install, build, run the whole test suite
# Each step is skipped when already done: packages present, node_modules in
# step with package-lock.json, guest image cached by the hash of its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  qemu-system-x86 qemu-utils linux-image-cloud-amd64 busybox-static erofs-utils
  crun runc kmod cpio util-linux iproute2 procps zstd
  # the image service's tests and benchmark: a real registry, htpasswd for
  # its basic auth, openssl for its token auth, skopeo as the peer
  docker-registry apache2-utils openssl skopeo
  # pod networking: Debian's CNI plugins, and iptables for their portmap
  containernetworking-plugins iptables
  # systemd-analyze, to verify deploy/'s units
  systemd
)

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "vmpod: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_node_modules() {
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    # Not `npm ci`: the lock file lacks the optional platform builds of buf
    # that the registry here does not carry, which npm ci refuses.
    npm install --no-audit --no-fund --loglevel=error
  fi
}

build() {
  npm run --silent build
  npm run --silent build:guest
}

case "${1:-}" in
  run)
    install_packages
    install_node_modules
    build
    exec node dist/src/main.js serve
    ;;
  test)
    install_packages
    install_node_modules
    build
    npm run --silent lint
    npm test
    ;;
  *)
    echo "usage: $0 run|test" >&2
    exit 2
    ;;
esac
