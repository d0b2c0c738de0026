#!/usr/bin/env bash
# `make images-check`: build the cpu fleet image and the API image here, run them, ask a question through the API.
#
# No Docker daemon and no registry here: Debian's buildah builds the Dockerfiles (--isolation chroot) on a Debian 12
# base that debootstrap makes from Debian's own packages (localhost/blip-debian-bookworm, made once). Then:
#   1. the fleet image's user and command are checked: non-root, the command `make serve TARGET=cpu` runs;
#   2. random-tiny is built inside the fleet container, and the image's own command serves it on loopback ports;
#   3. the API image runs against it (host network, loopback only), and one frame with two behaviours goes through
#      the API: the answer must be 200 with a score per behaviour.
# Everything runs on 127.0.0.1 and stops by itself (bounded waits); the containers are removed at exit.
# Needs root (buildah's chroot isolation) and buildah + debootstrap (apt-get install buildah debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${TAG:-0.1.0}
BASE=localhost/blip-debian-bookworm
WORK=${IMAGES_WORK:-/var/tmp/blip-images}
WHEELS=${WHEELS:-/opt/wheels}  # torch's CPU wheel, where PyTorch's index is unreachable
PYTHON=${PYTHON:-.venv/bin/python}
log() { printf '[images-check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { log "FAILED: $*"; exit 1; }

command -v buildah >/dev/null || fail "buildah is not installed (apt-get install buildah debootstrap)"
mkdir -p "$WORK"

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    log "making $BASE with debootstrap (Debian 12, minbase)"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" \
        http://deb.debian.org/debian > "$WORK/debootstrap.log" 2>&1 || fail "debootstrap: see $WORK/debootstrap.log"
    container=$(buildah from scratch)
    buildah copy --quiet "$container" "$WORK/rootfs" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$container"
    buildah commit --quiet "$container" "$BASE" >/dev/null
    buildah rm "$container" >/dev/null
fi

mounts=()
# The images' version label: pyproject.toml's version, the one every --version prints.
VERSION=$($PYTHON -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
args=(--build-arg VERSION="$VERSION")
if [ -d "$WHEELS" ]; then
    mounts+=(--volume "$WHEELS:/opt/wheels:ro")
    args+=(--build-arg PIP_FIND_LINKS=/opt/wheels)
fi
# This machine's pip trusts a proxy's CA (pip config's cert): the builds' pip must too.
cert=${PIP_CERT:-$($PYTHON -m pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.cert='\(.*\)'$/\1/p" | head -1)}
if [ -f "$cert" ]; then
    mounts+=(--volume "$cert:/etc/blip-build-ca.crt:ro")
    args+=(--build-arg PIP_CERT=/etc/blip-build-ca.crt)
fi
log "building blip-vqa-cpu:$TAG (docker/Dockerfile.cpu)"
started=$SECONDS
buildah bud --isolation chroot --layers --quiet -f docker/Dockerfile.cpu --build-arg BASE="$BASE" \
    "${args[@]}" "${mounts[@]}" -t "blip-vqa-cpu:$TAG" . > "$WORK/build-cpu.log" 2>&1 \
    || { tail -30 "$WORK/build-cpu.log"; fail "fleet image build"; }
log "built blip-vqa-cpu:$TAG in $((SECONDS - started)) s"
started=$SECONDS
buildah bud --isolation chroot --layers --quiet -f docker/Dockerfile.api --build-arg BASE="$BASE" \
    "${args[@]}" "${mounts[@]}" -t "blip-vqa-api:$TAG" . > "$WORK/build-api.log" 2>&1 || { tail -30 "$WORK/build-api.log"; fail "API image build"; }
log "built blip-vqa-api:$TAG in $((SECONDS - started)) s"
for image in cpu api; do
    log "blip-vqa-$image:$TAG: $(buildah images --format '{{.Size}}' "blip-vqa-$image:$TAG")"
    labelled=$(buildah inspect --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}' "blip-vqa-$image:$TAG")
    [ "$labelled" = "$VERSION" ] || fail "blip-vqa-$image:$TAG is labelled version '$labelled', not $VERSION"
done
config() {  # one field of an image's OCI config, as JSON
    buildah inspect --type image "$1" | $PYTHON -c "import json, sys; print(json.dumps(json.load(sys.stdin)['OCIv1']['config'].get('$2')))"
}

# 1. The fleet runs as non-root, with the command `make serve` runs.
user=$(config "blip-vqa-cpu:$TAG" User)
cmd=$(config "blip-vqa-cpu:$TAG" Cmd)
[ "$user" = '"1000"' ] || fail "the fleet image runs as user $user, not 1000"
api_user=$(config "blip-vqa-api:$TAG" User)
[ "$api_user" = '"10001"' ] || fail "the API image runs as user $api_user, not 10001"
expected='["python3", "-m", "blip_serving.serve", "--target", "cpu", "--listen-address", "0.0.0.0"]'
[ "$cmd" = "$expected" ] || fail "the fleet image's command is $cmd, not $expected"
grep -q 'python -m blip_serving.serve --target $(TARGET) --listen-address $(LISTEN_ADDRESS)' Makefile \
    || fail "make serve no longer runs the command the image runs"
log "fleet image: user $user, command $cmd (make serve's)"

fleet=$(buildah from --quiet "blip-vqa-cpu:$TAG")
api=$(buildah from --quiet "blip-vqa-api:$TAG")
pids=()
stop_tree() {  # `buildah run` does not pass signals on: stop what runs under it, then it (SIGTERM, then SIGKILL)
    $PYTHON - "$1" <<'PY'
import sys
import psutil
try:
    root = psutil.Process(int(sys.argv[1]))
except psutil.NoSuchProcess:
    sys.exit(0)
tree = [*root.children(recursive=True), root]
for process in tree:
    try:
        process.terminate()
    except psutil.NoSuchProcess:
        pass
_, alive = psutil.wait_procs(tree, timeout=45)  # the supervisor stops Triton, which has a 30 s exit timeout
for process in alive:
    try:
        process.kill()
    except psutil.NoSuchProcess:
        pass
PY
}
cleanup() {
    for pid in "${pids[@]}"; do stop_tree "$pid"; done
    buildah rm "$fleet" "$api" >/dev/null 2>&1 || true
}
trap cleanup EXIT
run() { buildah run --isolation chroot --network host "$@"; }

# 2. Build random-tiny inside the fleet container as its user, then serve it with the image's command on loopback.
log "building random-tiny inside the fleet container"
run --user 1000 "$fleet" -- python3 -m blip_build --target cpu --model random-tiny > "$WORK/fleet-build.log" 2>&1 \
    || { tail -20 "$WORK/fleet-build.log"; fail "artifact build in the fleet container"; }
http_port=$($PYTHON -c 'from blip_serving.triton.process import free_port; print(free_port())')
grpc_port=$($PYTHON -c 'from blip_serving.triton.process import free_port; print(free_port())')
metrics_port=$($PYTHON -c 'from blip_serving.triton.process import free_port; print(free_port())')
serve=$(echo "$cmd" | $PYTHON -c 'import json, sys; c = json.load(sys.stdin); c[c.index("--listen-address") + 1] = "127.0.0.1"; print(" ".join(c))')
log "fleet: $serve (HTTP $http_port)"
run --user 1000 --env BLIP_HTTP_PORT="$http_port" --env BLIP_GRPC_PORT="$grpc_port" \
    --env BLIP_METRICS_PORT="$metrics_port" "$fleet" -- $serve > "$WORK/fleet.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$http_port/v2/health/ready" >/dev/null && break
    sleep 2
done
curl -sf "http://127.0.0.1:$http_port/v2/health/ready" >/dev/null || { tail -30 "$WORK/fleet.log"; fail "fleet not ready"; }
uids=$($PYTHON -c "import psutil; print(sorted({p.uids().real for p in psutil.process_iter() if p.name() in ('tritonserver', 'triton_python_backend_stub') and '--http-port=$http_port' in ' '.join(p.cmdline() or ['-'])}))")
[ "$uids" = "[1000]" ] || fail "tritonserver runs as uid(s) $uids, not 1000"
log "fleet ready; tritonserver runs as uid $uids"

# 3. The API image against the fleet, and one frame through it.
api_port=$($PYTHON -c 'from blip_serving.triton.process import free_port; print(free_port())')
cat > "$WORK/api.toml" <<EOF
[router]
probe_interval_s = 1.0
[backends.cpu]
url = "127.0.0.1:$http_port"
EOF
run --user 10001 --volume "$WORK/api.toml:/etc/blip/api.toml:ro" --env BLIP_API_TOKEN=images-check \
    "$api" -- python3 -m blip_api --config /etc/blip/api.toml --listen-address 127.0.0.1 --port "$api_port" \
    > "$WORK/api.log" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
    curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null && break
    sleep 1
done
answer=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer images-check" -H "Content-Type: image/png" \
    --data-binary @client/samples/chelsea.png "http://127.0.0.1:$api_port/v1/frames?behavior=barking&behavior=sleeping")
code=$(echo "$answer" | tail -1)
body=$(echo "$answer" | head -n -1)
log "POST /v1/frames -> $code $body"
[ "$code" = 200 ] || { tail -20 "$WORK/api.log"; fail "the API answered $code"; }
echo "$body" | $PYTHON -c 'import json, sys; r = json.load(sys.stdin)["results"]; assert [x["behavior"] for x in r] == ["barking", "sleeping"] and all(0 <= x["score"] <= 1 for x in r), r'
cleanup
trap - EXIT
left=$($PYTHON -c "import psutil; print(sum(p.name() in ('tritonserver', 'triton_python_backend_stub') and '--http-port=$http_port' in ' '.join(p.cmdline() or ['-']) for p in psutil.process_iter()))")
[ "$left" = 0 ] || fail "$left Triton processes outlived the check"
log "OK: the cpu fleet image and the API image built, ran and answered through the API; everything stopped"
