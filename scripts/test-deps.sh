#!/usr/bin/env bash
# Installs the real servers the tests run against (from Debian packages)
# when any is missing; with --bench also wrk, for the REST benchmarks.
# Run as root, or install them yourself with:
#   apt-get install -y --no-install-recommends redis-server redis-tools prosody ngircd jing [wrk]
set -euo pipefail
pkgs=(redis-server redis-tools prosody ngircd jing)
bins="redis-server:redis-server redis-cli:redis-tools redis-benchmark:redis-tools prosody:prosody prosodyctl:prosody ngircd:ngircd jing:jing"
if [ "${1:-}" = --bench ]; then
  pkgs+=(wrk)
  bins="$bins wrk:wrk"
fi
need=()
for bin in $bins; do
  cmd=${bin%%:*}
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    need+=("${bin##*:}")
  fi
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing test servers: ${need[*]}" >&2
  echo "install them with: sudo apt-get install -y --no-install-recommends ${pkgs[*]}" >&2
  exit 1
fi
echo "installing test servers from Debian packages: ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
# Debian starts the packaged services; the tests start their own on free ports.
for svc in redis-server prosody ngircd; do
  (service "$svc" stop || true) >/dev/null 2>&1
done
