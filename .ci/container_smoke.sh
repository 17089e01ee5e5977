#!/usr/bin/env bash
# Container smoke test: build the gateway image with podman, run it with the host's
# ./model_repository mounted read-only at /models, wait for /readyz, classify a real
# photograph (scikit-image's "chelsea", a tabby cat) through the published port, then
# stop the container with SIGTERM and check it drained and exited cleanly.
#
# Works without a Docker engine or a reachable container registry (see
# /work/shared/notes/containers.md): podman + runc, and a Debian base image made
# locally with debootstrap when BASE_IMAGE is not already present.
#
# Usage: .ci/container_smoke.sh [--prepare-only]
#   --prepare-only   host set-up and base image only (no build, no run)
# Environment (all optional):
#   IMAGE        tag to build            (localhost/visiongate:ci)
#   BASE_IMAGE   Dockerfile base         (localhost/debian:bookworm, made by debootstrap if missing)
#   EXTRAS       pip extras in the image (triton)
#   MODEL_REPO   host model repository   (<repo>/model_repository)
#   MODEL        model to classify with  (efficientnet_lite0)
#   SMOKE_PORT   host port to publish    (18080)
#   PYTHON       python with Pillow + scikit-image for the test photo (<repo>/.venv/bin/python)
#   DEBIAN_MIRROR  debootstrap mirror    (the Debian archive entry of apt's sources)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

IMAGE=${IMAGE:-localhost/visiongate:ci}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian:bookworm}
EXTRAS=${EXTRAS-triton}
MODEL_REPO=${MODEL_REPO:-$ROOT/model_repository}
MODEL=${MODEL:-efficientnet_lite0}
SMOKE_PORT=${SMOKE_PORT:-18080}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d /tmp/visiongate-smoke.XXXXXX)
CID=""

log() { printf '[smoke %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "FAIL: $*"; exit 1; }

cleanup() {
    if [[ -n "$CID" ]]; then
        podman logs "$CID" >"$WORK/container.log" 2>&1 || true
        podman rm -f "$CID" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. host set-up --------------------------------------------------------------
# The VM refuses rlimits above its hard limits (podman's defaults ask for more) and crun
# fails on its hybrid cgroups; runc + cgroupfs work. The settings go in a private
# containers.conf passed through CONTAINERS_CONF, so the host's files stay untouched.
setup_host() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    if ! podman image exists "$BASE_IMAGE" 2>/dev/null; then
        command -v debootstrap >/dev/null || missing+=(debootstrap)
    fi
    if ((${#missing[@]})); then
        [[ $(id -u) == 0 ]] || die "need ${missing[*]}: run as root or apt-get install them first"
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [[ -z "${CONTAINERS_CONF:-}" ]]; then
        export CONTAINERS_CONF="$WORK/containers.conf"
        cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
    fi
    log "podman $(podman version --format '{{.Client.Version}}'), CONTAINERS_CONF=$CONTAINERS_CONF"
}

# The first plain-Debian archive in apt's sources (they also list Node.js / cloud SDK
# repositories, which fail as a Debian mirror).
debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
    local url
    url=$(grep -rhoE '(URIs:|^deb)[[:space:]]+[^[:space:]]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | awk '{print $2}' | grep -E '/debian/?$' | head -1 || true)
    echo "${url:-http://deb.debian.org/debian}"
}

# --- 2. base image ------------------------------------------------------------------
ensure_base_image() {
    if podman image exists "$BASE_IMAGE"; then
        log "base image $BASE_IMAGE present"
        return
    fi
    [[ "$BASE_IMAGE" == localhost/* ]] || die "base image $BASE_IMAGE missing and not a localhost/ name to build"
    local mirror rootfs="$WORK/rootfs" t0=$SECONDS
    mirror=$(debian_mirror)
    log "building $BASE_IMAGE with debootstrap from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
    rm -f "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    log "base image built in $((SECONDS - t0)) s"
}

# --- 3. build -----------------------------------------------------------------------
build_image() {
    # pip inside the build needs the host's CA bundle here; mounting it keeps the
    # Dockerfile free of site-specific settings.
    local mounts=()
    if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
        printf '[global]\ncert = /run/host-ca.pem\n' >"$WORK/pip.conf"
        mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.pem:ro -v "$WORK/pip.conf:/etc/pip.conf:ro")
    fi
    local t0=$SECONDS
    log "building $IMAGE (BASE_IMAGE=$BASE_IMAGE EXTRAS=$EXTRAS)"
    # docker format keeps the HEALTHCHECK instruction (OCI image config has no field for it).
    podman build --format docker --target runtime "${mounts[@]}" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "EXTRAS=$EXTRAS" \
        -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; die "podman build failed"; }
    BUILD_S=$((SECONDS - t0))
    IMAGE_MB=$(($(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000))
    log "built $IMAGE in ${BUILD_S} s, image size ${IMAGE_MB} MB"
}

# --- 4. run and check ---------------------------------------------------------------
make_photo() {
    "$PYTHON" - "$WORK/chelsea.jpg" <<'EOF'
import sys
from PIL import Image
from skimage import data

Image.fromarray(data.chelsea()).save(sys.argv[1], format="JPEG", quality=90)
EOF
}

wait_ready() {
    local url="http://127.0.0.1:$SMOKE_PORT/readyz" t0=$SECONDS
    for _ in $(seq 300); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then
            log "ready after $((SECONDS - t0)) s"
            return
        fi
        [[ $(podman inspect --format '{{.State.Running}}' "$CID") == true ]] \
            || { podman logs "$CID" | tail -30; die "container exited before it was ready"; }
        sleep 0.2
    done
    podman logs "$CID" | tail -30
    die "not ready within 60 s"
}

check_cat() {
    # A cat label (tabby / tiger cat / Egyptian cat / Persian cat...) must be the top prediction.
    "$PYTHON" - "$1" <<'EOF'
import json
import sys

body = json.load(open(sys.argv[1]))


def labels(node):
    """Every string under a 'label' key, in document order (top-1 first)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "label" and isinstance(value, str):
                yield value
            else:
                yield from labels(value)
    elif isinstance(node, list):
        for item in node:
            yield from labels(item)


found = list(labels(body))
print("labels:", found[:5])
if not found or "cat" not in found[0].lower():
    sys.exit(f"top-1 label is not a cat: {found[:5]}")
EOF
}

run_and_check() {
    [[ -f "$MODEL_REPO/$MODEL/config.pbtxt" ]] \
        || die "no $MODEL in $MODEL_REPO: run 'visiongate export --defaults --repository $MODEL_REPO' first"
    make_photo
    CID=$(podman run -d -p "127.0.0.1:$SMOKE_PORT:8080" -v "$MODEL_REPO:/models:ro" "$IMAGE")
    log "container ${CID:0:12} started"
    wait_ready
    [[ $(podman exec "$CID" id -u) != 0 ]] || die "gateway runs as root"
    podman healthcheck run "$CID" >/dev/null || die "image HEALTHCHECK failed"

    curl -fsS -H 'Content-Type: image/jpeg' --data-binary "@$WORK/chelsea.jpg" \
        "http://127.0.0.1:$SMOKE_PORT/v1/classify?model=$MODEL" -o "$WORK/classify.json" \
        || die "POST /v1/classify failed"
    log "classify: $(head -c 400 "$WORK/classify.json")"
    check_cat "$WORK/classify.json" || die "wrong answer for a cat photo"

    curl -fsS "http://127.0.0.1:$SMOKE_PORT/metrics" | grep -q '^# TYPE' || die "/metrics has no Prometheus metrics"

    local t0=$SECONDS code
    podman stop -t 20 "$CID" >/dev/null
    code=$(podman inspect --format '{{.State.ExitCode}}' "$CID")
    log "stopped with SIGTERM in $((SECONDS - t0)) s, exit code $code"
    [[ "$code" == 0 ]] || { podman logs "$CID" | tail -20; die "gateway did not exit cleanly on SIGTERM"; }
}

setup_host
ensure_base_image
[[ "${1:-}" == --prepare-only ]] && exit 0
build_image
run_and_check
log "PASS (build ${BUILD_S} s, image ${IMAGE_MB} MB)"
