#!/usr/bin/env bash
# Installs Interior Studio on a host of one role; run by the EC2 UserData after it has cloned the project
# to /opt/studio and written /etc/studio/studio.env. Idempotent: running it again converges.
#
#   install.sh backend    API, dispatcher and UI (studio-backend, studio-dispatcher, studio-ui)
#   install.sh mlserver   model sync, ComfyUI and its custom nodes at the commits of comfyui.lock,
#                         comfyui@8188 (text) and comfyui@8189 (sketch)
#   install.sh <role> --dry-run   print every command instead of running it
#
# Paths can be moved for tests: STUDIO_ROOT, COMFYUI_ROOT, STATE_DIR, ETC_DIR, SYSTEMD_DIR, PYTHON.
set -euo pipefail

STUDIO_ROOT="${STUDIO_ROOT:-/opt/studio}"
COMFYUI_ROOT="${COMFYUI_ROOT:-/opt/comfyui}"
STATE_DIR="${STATE_DIR:-/var/lib/studio}"
ETC_DIR="${ETC_DIR:-/etc/studio}"
SYSTEMD_DIR="${SYSTEMD_DIR:-/etc/systemd/system}"
PYTHON="${PYTHON:-python3}"
COMFY_PORTS=(8188 8189)
DRY_RUN=0

usage() {
    echo "usage: $0 backend|mlserver [--dry-run]" >&2
    exit 2
}

run() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "+ $*"
    else
        "$@"
    fi
}

log() { echo "install.sh: $*" >&2; }

# On first boot unattended-upgrades may hold the dpkg lock for minutes: wait for it instead of failing.
apt_packages() {
    run apt-get -o DPkg::Lock::Timeout=600 update -q
    run env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
        --no-install-recommends "$@"
}

studio_user() {
    if ! id -u studio >/dev/null 2>&1; then
        run useradd --system --home-dir "$STATE_DIR" --shell /usr/sbin/nologin --user-group studio
    fi
    run install -d -o studio -g studio -m 0750 "$STATE_DIR" "$STATE_DIR/data" "$STATE_DIR/models"
    run install -d -o root -g studio -m 0750 "$ETC_DIR"
    if [ ! -f "$ETC_DIR/studio.env" ]; then
        log "$ETC_DIR/studio.env is missing: the UserData (or you) must write it first (see .env.example)"
        [ "$DRY_RUN" = 1 ] || exit 1
    fi
}

# $1: the project's extras, e.g. "[cutout]" (the API host's background removal)
project_venv() {
    [ -x "$STUDIO_ROOT/.venv/bin/python" ] || run "$PYTHON" -m venv "$STUDIO_ROOT/.venv"
    run "$STUDIO_ROOT/.venv/bin/python" -m pip install -q -U pip
    run "$STUDIO_ROOT/.venv/bin/python" -m pip install -q -e "$STUDIO_ROOT${1:-}"
    if [ "${1:-}" = "[cutout]" ]; then
        # pymatting (imported by rembg) compiles its numba kernels on first import, ~40 s, and caches them
        # beside its sources, which the studio user cannot write: compile them now, as root, once.
        run "$STUDIO_ROOT/.venv/bin/python" -c "import rembg"
    fi
}

install_units() {
    for unit in "$@"; do
        run install -m 0644 "$STUDIO_ROOT/systemd/$unit" "$SYSTEMD_DIR/$unit"
    done
    run systemctl daemon-reload
}

lock() {
    PYTHONPATH="$STUDIO_ROOT" "$PYTHON" -m mlserver.provision.lock "$@"
}

# Clone (once), fetch and check out exactly the locked commit; refuse to go on if HEAD differs.
checkout() {
    local name="$1" repo="$2" commit="$3" dest="$4"
    if [ ! -d "$dest/.git" ]; then
        run git clone --quiet --no-checkout "$repo" "$dest"
    fi
    run git -C "$dest" fetch --quiet origin "$commit"
    run git -C "$dest" checkout --quiet --detach "$commit"
    if [ "$DRY_RUN" = 0 ] && [ "$(git -C "$dest" rev-parse HEAD)" != "$commit" ]; then
        log "$name is not at $commit after checkout"
        exit 1
    fi
}

comfyui() {
    lock --check >&2
    local venv="$COMFYUI_ROOT/.venv" name repo commit requirements dest
    while read -r name repo commit requirements; do
        if [ "$name" = "ComfyUI" ]; then dest="$COMFYUI_ROOT"; else dest="$COMFYUI_ROOT/custom_nodes/$name"; fi
        checkout "$name" "$repo" "$commit" "$dest"
    done < <(lock --repos)
    [ -x "$venv/bin/python" ] || run "$PYTHON" -m venv "$venv"
    run "$venv/bin/python" -m pip install -q -U pip
    local torch=()
    mapfile -t torch < <(lock --torch)
    run "$venv/bin/python" -m pip install -q --index-url "${torch[0]}" "${torch[@]:1}"
    while read -r name repo commit requirements; do
        [ "$requirements" = "-" ] && continue
        if [ "$name" = "ComfyUI" ]; then dest="$COMFYUI_ROOT"; else dest="$COMFYUI_ROOT/custom_nodes/$name"; fi
        run "$venv/bin/python" -m pip install -q -r "$dest/$requirements"
    done < <(lock --repos)
    for port in "${COMFY_PORTS[@]}"; do
        run install -d -o studio -g studio -m 0750 \
            "$STATE_DIR/comfyui/$port/input" "$STATE_DIR/comfyui/$port/output" "$STATE_DIR/comfyui/$port/temp" \
            "$STATE_DIR/comfyui/$port/user"
    done
}

role_backend() {
    apt_packages git python3 python3-venv python3-dev build-essential
    studio_user
    project_venv "[cutout]"
    install_units studio.target studio-backend.service studio-dispatcher.service studio-ui.service
    run systemctl enable --now studio.target studio-backend.service studio-dispatcher.service studio-ui.service
}

role_mlserver() {
    apt_packages git python3 python3-venv python3-dev build-essential libgl1 libglib2.0-0
    studio_user
    project_venv
    comfyui
    install_units studio.target studio-model-sync.service studio-model-refresh.service \
        studio-model-refresh.timer comfyui@.service
    local instances=()
    for port in "${COMFY_PORTS[@]}"; do instances+=("comfyui@$port.service"); done
    run systemctl enable --now studio.target studio-model-sync.service "${instances[@]}"
    # Models a lead adds through the API reach this host without a redeploy.
    run systemctl enable --now studio-model-refresh.timer
}

main() {
    [ $# -ge 1 ] || usage
    local role="$1"
    shift
    for arg in "$@"; do
        case "$arg" in
            --dry-run) DRY_RUN=1 ;;
            *) usage ;;
        esac
    done
    case "$role" in
        backend) role_backend ;;
        mlserver) role_mlserver ;;
        *) usage ;;
    esac
    log "$role installed"
}

main "$@"
