#!/usr/bin/env bash
# Container smoke test: build the gateway image with podman, run it with the host's
# ./model_repository mounted read-only at /models, wait for /readyz, classify a real
# photograph (scikit-image's "chelsea", a tabby cat) through the published port, then
# stop the container with SIGTERM and check it drained and exited cleanly.
#
# Works without a Docker engine or a reachable container registry
# (podman + runc, and a Debian base image made
# locally with debootstrap when BASE_IMAGE is not already present).
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
    if [[ -n "$CID" ]]; then podman rm -f "$CID" >/dev/null 2>&1 || true; fi
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
    # like debian:*-slim: no package caches or lists in the base (the Dockerfile runs apt-get update)
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
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
    # ImageNet's domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian cat: ids 281-285)
    # must be the top prediction for scikit-image's chelsea.
    "$PYTHON" - "$1" <<'EOF'
import json
import sys

CATS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}
top = json.load(open(sys.argv[1]))["predictions"][0]
print(f"top-1: {top}")
if top["class_id"] not in CATS or top["label"] != CATS[top["class_id"]]:
    sys.exit(f"top-1 is not a cat: {top}")
EOF
}

run_and_check() {
    [[ -f "$MODEL_REPO/$MODEL/config.pbtxt" ]] \
        || die "no $MODEL in $MODEL_REPO: run 'visiongate export --defaults --repository $MODEL_REPO' first"
    make_photo
    # --health-interval disable: no systemd timer here; the check is run once by hand below.
    # (podman still logs that it cannot reach systemd for the timer: kept out of the output)
    # --read-only (+ podman's tmpfs /tmp) as in compose.yaml and the pods' readOnlyRootFilesystem.
    CID=$(podman run -d --read-only --health-interval disable -p "127.0.0.1:$SMOKE_PORT:8080" \
        -v "$MODEL_REPO:/models:ro" "$IMAGE" 2>"$WORK/run.err") || { cat "$WORK/run.err"; die "podman run failed"; }
    log "container ${CID:0:12} started"
    wait_ready
    [[ $(podman exec "$CID" id -u) != 0 ]] || die "gateway runs as root"
    podman healthcheck run "$CID" >/dev/null 2>>"$WORK/run.err" || die "image HEALTHCHECK failed"

    curl -fsS -H 'Content-Type: image/jpeg' --data-binary "@$WORK/chelsea.jpg" \
        "http://127.0.0.1:$SMOKE_PORT/v1/classify?model=$MODEL" -o "$WORK/classify.json" \
        || die "POST /v1/classify failed"
    log "classify: $(head -c 400 "$WORK/classify.json")"
    check_cat "$WORK/classify.json" || die "wrong answer for a cat photo"

    # (to a file, not `curl | grep -q`: with pipefail an early grep exit fails the pipe)
    if ! { curl -fsS "http://127.0.0.1:$SMOKE_PORT/metrics" -o "$WORK/metrics.txt" \
        && grep -q '^# TYPE' "$WORK/metrics.txt"; }; then
        die "/metrics has no Prometheus metrics"
    fi

    local t0=$SECONDS code
    # 30 s as compose's stop_grace_period: above the gateway's drain timeout (20 s)
    podman stop -t 30 "$CID" >/dev/null 2>>"$WORK/run.err"
    code=$(podman inspect --format '{{.State.ExitCode}}' "$CID")
    podman logs "$CID" >"$WORK/container.log" 2>&1
    log "stopped with SIGTERM in $((SECONDS - t0)) s, exit code $code"
    # 137 would mean podman gave up waiting and killed it: the drain did not finish in time.
    if [[ "$code" != 0 ]] || ! grep -q 'Application shutdown complete' "$WORK/container.log"; then
        tail -20 "$WORK/container.log"
        die "gateway did not shut down cleanly on SIGTERM"
    fi
}

setup_host
ensure_base_image
[[ "${1:-}" == --prepare-only ]] && exit 0
build_image
run_and_check
log "PASS (build ${BUILD_S} s, image ${IMAGE_MB} MB)"
