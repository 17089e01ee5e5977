#!/usr/bin/env bash
# System packages some tests drive for real (each test skips with a reason when its tool is absent,
# so a machine without root or apt still runs everything else):
#   chromium  the web playground, in headless Chromium (tests/ui)
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: cannot install ${need[*]} (needs root and apt); their tests will skip" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
  || echo "system-deps: apt-get install ${need[*]} failed; their tests will skip" >&2
exit 0
