#!/usr/bin/env bash
# Qt/X libraries and Xvfb that napari's GUI tests need on a headless Debian/Ubuntu machine.
# As root it installs what is missing; otherwise it prints the apt-get line to run.
set -euo pipefail
PKGS="xvfb xauth libgl1 libegl1 libopengl0 libgl1-mesa-dri libglib2.0-0 libfontconfig1 libfreetype6
libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0 libx11-6 libx11-xcb1 libxext6 libxcb1 libxcb-cursor0
libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render0 libxcb-render-util0
libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xinput0 libxcb-xkb1"
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-system-deps: not a Debian-like system; install Xvfb and Qt's X11/OpenGL libraries yourself"
  exit 0
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-system-deps: all present"
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-upgrade: never upgrade an installed Mesa/glib under a running system.
  apt-get install -y -qq --no-install-recommends --no-upgrade $missing >/dev/null
  echo "install-system-deps: installed$missing"
else
  echo "install-system-deps: missing:$missing"
  echo "run: sudo apt-get install -y --no-install-recommends$missing"
fi
