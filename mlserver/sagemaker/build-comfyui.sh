#!/usr/bin/env bash
# Docker build step of mlserver/sagemaker/Dockerfile: ComfyUI and every custom node at the commits of
# mlserver/provision/comfyui.lock, PyTorch from the lock's index, each repo's requirements, in one venv.
# Same steps as install.sh's comfyui() (which also needs systemd and the studio user, so it cannot run here).
#
#   build-comfyui.sh EXPECTED_COMFYUI_COMMIT
#
# EXPECTED_COMFYUI_COMMIT is the Dockerfile's COMFYUI_COMMIT: the build stops if the lock says otherwise.
# Paths: STUDIO_ROOT (the project's mlserver/ is there), COMFYUI_ROOT, PYTHON.
set -euo pipefail

STUDIO_ROOT="${STUDIO_ROOT:-/opt/studio}"
COMFYUI_ROOT="${COMFYUI_ROOT:-/opt/comfyui}"
PYTHON="${PYTHON:-python3}"
expected="${1:?usage: $0 EXPECTED_COMFYUI_COMMIT}"

log() { echo "build-comfyui.sh: $*" >&2; }

lock() {
    PYTHONPATH="$STUDIO_ROOT" "$PYTHON" -m mlserver.provision.lock "$@"
}

dest_of() {
    if [ "$1" = "ComfyUI" ]; then echo "$COMFYUI_ROOT"; else echo "$COMFYUI_ROOT/custom_nodes/$1"; fi
}

# A shallow fetch of exactly the locked commit (GitHub serves any reachable commit by id).
checkout() {
    local name="$1" repo="$2" commit="$3" dest
    dest="$(dest_of "$name")"
    mkdir -p "$dest"
    git -C "$dest" init --quiet
    git -C "$dest" remote add origin "$repo"
    git -C "$dest" fetch --quiet --depth 1 origin "$commit"
    git -C "$dest" checkout --quiet --detach FETCH_HEAD
    if [ "$(git -C "$dest" rev-parse HEAD)" != "$commit" ]; then
        log "$name is not at $commit after checkout"
        exit 1
    fi
    rm -rf "$dest/.git"
}

main() {
    lock --check >&2
    local name repo commit requirements locked
    locked="$(lock --repos | awk '$1 == "ComfyUI" { print $3 }')"
    if [ "$locked" != "$expected" ]; then
        log "the Dockerfile's COMFYUI_COMMIT $expected is not the lock's $locked: update the Dockerfile"
        exit 1
    fi
    while read -r name repo commit requirements; do
        checkout "$name" "$repo" "$commit"
    done < <(lock --repos)
    "$PYTHON" -m venv "$COMFYUI_ROOT/.venv"
    local pip=("$COMFYUI_ROOT/.venv/bin/python" -m pip install --no-cache-dir --quiet)
    local torch=()
    mapfile -t torch < <(lock --torch)
    "${pip[@]}" --index-url "${torch[0]}" "${torch[@]:1}"
    while read -r name repo commit requirements; do
        [ "$requirements" = "-" ] && continue
        "${pip[@]}" -r "$(dest_of "$name")/$requirements"
    done < <(lock --repos)
    log "ComfyUI $(lock --repos | awk '$1 == "ComfyUI" { print $3 }') and its custom nodes installed"
}

main "$@"
