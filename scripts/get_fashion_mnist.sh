#!/usr/bin/env bash
# Makes Fashion-MNIST available for the demo: Debian's dataset-fashion-mnist package where
# apt-get is usable (it installs the four IDX .gz files torchvision uses into
# /usr/share/datasets/fashion-mnist), otherwise the runner falls back on torchvision's download.
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST: found in $dir"; exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
if command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
  echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"
  $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
    || echo "Fashion-MNIST: apt-get failed; the run will try torchvision's download"
else
  echo "Fashion-MNIST: apt-get not usable here; the run will try torchvision's download"
fi
exit 0
