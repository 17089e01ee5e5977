#!/usr/bin/env bash
# System packages some tests drive for real (each test skips with a reason when its tool is absent,
# so a machine without root or apt still runs everything else):
#   chromium  the web playground, in headless Chromium (tests/ui)
#   kubectl   renders the Kustomize trees (tests/deploy)
#   libb64-0d perf_analyzer (tritonclient 2.51's binary) needs libb64.so.0d (tests/grpc)
#   podman, runc, debootstrap: .ci/container_smoke.sh installs these itself
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v kubectl >/dev/null 2>&1 || need+=(kubectl)
ldconfig -p 2>/dev/null | grep -q libb64.so.0d || need+=(libb64-0d)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: cannot install ${need[*]} (needs root and apt); their tests will skip" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
apt-get update -qq >/dev/null || echo "system-deps: apt-get update failed" >&2
for pkg in "${need[@]}"; do  # one at a time: a package missing from this machine's sources skips alone
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
    || echo "system-deps: apt-get install $pkg failed; its tests will skip" >&2
done
exit 0
