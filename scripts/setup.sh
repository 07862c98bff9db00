#!/usr/bin/env bash
# One-time system setup for building and testing Braid on Debian (run as root, or it uses sudo).
# - Python 3.11 with its shared library: Braid embeds it (pyo3). This machine's CPython (pyenv) has it.
# - Xvfb and Mesa's software Vulkan/GL: the GUI tests render snapshots without a GPU.
# - sccache: optional, makes rebuilds of a fresh clone fast.
set -euo pipefail
packages=(xvfb mesa-vulkan-drivers libvulkan1 libgl1-mesa-dri libegl-mesa0 sccache)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
python3 - <<'PY'
import sys, sysconfig
if sys.version_info < (3, 9):
    sys.exit(f"Braid needs Python 3.9 or newer, found {sys.version}")
if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
    sys.exit("Braid embeds Python: python3 must be built with --enable-shared (libpython3.x.so)")
PY
