#!/usr/bin/env bash
# Installs the real servers and tools the tests run against (from Debian
# packages) when any is missing: Redis, Prosody, ngircd, jing, Chromium
# (console and example pages), redis-py (the Python worker example),
# script(1) (an interactive redis-cli); with --bench also wrk, for the REST
# benchmarks. Run as root, or install them yourself with:
#   apt-get install -y --no-install-recommends redis-server redis-tools prosody ngircd jing chromium python3-redis bsdutils [wrk]
set -euo pipefail
pkgs=(redis-server redis-tools prosody ngircd jing chromium python3-redis bsdutils)
bins="redis-server:redis-server redis-cli:redis-tools redis-benchmark:redis-tools prosody:prosody prosodyctl:prosody ngircd:ngircd jing:jing chromium:chromium script:bsdutils"
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
# the Python worker example runs on Debian's python3 with its redis-py
if ! /usr/bin/python3 -c 'import redis' >/dev/null 2>&1; then
  need+=(python3-redis)
fi
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
