#!/usr/bin/env bash
# Installs what Monitoriza needs on a Debian machine: the system packages the tests and the
# local stack run for real, and a virtualenv with the package and its dev tools.
# Usage: scripts/bootstrap.sh [--run | --python-only]
#   (default) everything the tests need; --run only what `monitoriza up --demo` needs
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# binary -> Debian package that provides it
declare -A PACKAGES=(
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager
  [redis-server]=redis-server
  [dockerd]=docker.io
  [runuser]=util-linux
  [chromium]=chromium
  [chromedriver]=chromium-driver
)
# What `make run` (monitoriza up --demo) needs; Docker is optional there.
RUN_BINARIES=(prometheus prometheus-alertmanager redis-server)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "bootstrap: need root to run: $*" >&2; exit 2
  fi
}

apt_install() {
  echo "bootstrap: installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null
}

system_packages() {
  local missing=()
  for binary in "${!PACKAGES[@]}"; do
    command -v "$binary" >/dev/null || missing+=("${PACKAGES[$binary]}")
  done
  # Debian keeps the PostgreSQL server binaries outside PATH.
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  # The static busybox is the one that runs inside an imported image with no libc.
  [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q static \
    || missing+=(busybox-static file)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
  fi
}

python_env() {
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv python3-pip
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  # Reinstall only when the project's requirements changed since the last install.
  if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    touch "$VENV/.installed"
  fi
}

run_packages() {
  local missing=()
  for binary in "${RUN_BINARIES[@]}"; do
    command -v "$binary" >/dev/null || missing+=("${PACKAGES[$binary]}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
  fi
}

case "${1:-}" in
  --python-only) ;;
  --run) run_packages ;;
  *) system_packages ;;
esac
python_env
