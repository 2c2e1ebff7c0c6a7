#!/bin/bash
# SageMaker notebook instance lifecycle configuration, OnStart script: kohya-ss sd-scripts for the
# style LoRAs (python -m loras.train ... --run), pinned to one commit, on the persistent volume.
#
# Only /home/ec2-user/SageMaker survives a stop/start, so the checkout and its conda environment live
# there and every start re-checks them: nothing to do when the pinned commit is checked out and its
# environment finished installing (a stamp file), otherwise clone/fetch, check out the commit and
# (re)install. A lifecycle script must finish within 5 minutes, so the install runs in the background
# (log: $KOHYA_HOME/install.log); a lock keeps two starts from installing at once.
#
# Register it (the script is passed base64-encoded, at most 16 KB):
#   aws sagemaker create-notebook-instance-lifecycle-config --notebook-instance-lifecycle-config-name \
#     interior-studio-kohya --on-start Content="$(base64 -w0 loras/notebook_lifecycle.sh)"
# Then, in a notebook terminal:
#   source activate "$HOME/SageMaker/kohya/env" && export SD_SCRIPTS_DIR="$HOME/SageMaker/kohya/sd-scripts"
#
# The variables below can be overridden from the environment (the tests run it against stub tools).
set -euo pipefail

# kohya-ss/sd-scripts v0.10.1 (2026-02-13). Bump deliberately, after a test training run.
SD_SCRIPTS_COMMIT="${SD_SCRIPTS_COMMIT:-ae72efb92babe89ff8e70f057e42db68440e8d61}"
SD_SCRIPTS_REPO="${SD_SCRIPTS_REPO:-https://github.com/kohya-ss/sd-scripts.git}"
PERSISTENT_DIR="${PERSISTENT_DIR:-/home/ec2-user/SageMaker}"
NOTEBOOK_USER="${NOTEBOOK_USER:-ec2-user}"
CONDA="${CONDA:-/home/ec2-user/anaconda3/bin/conda}"
CONDA_ENVS_DIR="${CONDA_ENVS_DIR:-/home/ec2-user/anaconda3/envs}"
PYTHON_VERSION="${PYTHON_VERSION:-3.10}"
# sd-scripts' README: torch first (its requirements.txt has none), from the CUDA 12.4 wheels.
TORCH_PACKAGES="${TORCH_PACKAGES:-torch==2.6.0 torchvision==0.21.0}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu124}"
KOHYA_FOREGROUND="${KOHYA_FOREGROUND:-0}"

KOHYA_HOME="$PERSISTENT_DIR/kohya"
INSTALL_VARS="SD_SCRIPTS_COMMIT SD_SCRIPTS_REPO CONDA PYTHON_VERSION TORCH_PACKAGES TORCH_INDEX_URL KOHYA_HOME"
# shellcheck disable=SC2086
export $INSTALL_VARS INSTALL_VARS NOTEBOOK_USER

install_sd_scripts() {
    set -euo pipefail
    local src="$KOHYA_HOME/sd-scripts" env="$KOHYA_HOME/env"
    local stamp="$env/.installed-$SD_SCRIPTS_COMMIT"
    exec 9>"$KOHYA_HOME/.install.lock"
    if ! flock -n 9; then
        echo "another install is running; leaving it to finish"
        return 0
    fi
    if [ -f "$stamp" ] && [ "$(git -C "$src" rev-parse HEAD 2>/dev/null)" = "$SD_SCRIPTS_COMMIT" ]; then
        echo "sd-scripts $SD_SCRIPTS_COMMIT already installed"
        return 0
    fi
    echo "$(date -u +%FT%TZ) installing sd-scripts $SD_SCRIPTS_COMMIT"
    if [ ! -d "$src/.git" ]; then
        git clone --quiet "$SD_SCRIPTS_REPO" "$src"
    fi
    git -C "$src" fetch --quiet origin "$SD_SCRIPTS_COMMIT" || git -C "$src" fetch --quiet origin
    git -C "$src" checkout --quiet --detach "$SD_SCRIPTS_COMMIT"
    if [ ! -x "$env/bin/python" ]; then
        "$CONDA" create --yes --quiet --prefix "$env" "python=$PYTHON_VERSION" pip
    fi
    # shellcheck disable=SC2086  # TORCH_PACKAGES is a list of requirement specifiers
    "$env/bin/python" -m pip install --quiet $TORCH_PACKAGES --index-url "$TORCH_INDEX_URL"
    # requirements.txt ends with `-e .` (sd-scripts' `library` package): run it from the checkout.
    (cd "$src" && "$env/bin/python" -m pip install --quiet --upgrade -r requirements.txt)
    rm -f "$env"/.installed-*
    touch "$stamp"
    echo "$(date -u +%FT%TZ) sd-scripts $SD_SCRIPTS_COMMIT installed"
}

run_as_notebook_user() {
    local body var
    local -a vars=()
    body="$(declare -f install_sd_scripts); install_sd_scripts"
    if [ "$(id -un)" = "$NOTEBOOK_USER" ]; then
        bash -c "$body"
        return
    fi
    for var in $INSTALL_VARS; do
        vars+=("$var=${!var}")
    done
    sudo -u "$NOTEBOOK_USER" -H env "${vars[@]}" bash -c "$body"
}

mkdir -p "$KOHYA_HOME"
if [ "$(id -u)" = 0 ] && [ "$(id -un)" != "$NOTEBOOK_USER" ]; then
    chown "$NOTEBOOK_USER:" "$KOHYA_HOME"
fi
# `conda activate kohya` from a notebook terminal: the envs folder is on the (reset) root volume.
if [ -d "$CONDA_ENVS_DIR" ]; then
    ln -sfn "$KOHYA_HOME/env" "$CONDA_ENVS_DIR/kohya"
fi

if [ "$KOHYA_FOREGROUND" = 1 ]; then
    run_as_notebook_user
else
    nohup bash -c "$(declare -f install_sd_scripts run_as_notebook_user); run_as_notebook_user" \
        >>"$KOHYA_HOME/install.log" 2>&1 &
    echo "sd-scripts install started in the background; log: $KOHYA_HOME/install.log"
fi
