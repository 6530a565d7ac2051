#!/usr/bin/env bash
# Prepare a folder that bench/device-check.sh runs from on a machine with a real GPU and no network
# (and perhaps no Node). Run here, in a checkout after `npm ci`:
#
#   bash bench/device-prepare.sh [OUT]        # default OUT: device/ (ignored by git)
#
# OUT then holds, under 64 MiB in all:
#   node.xz          this machine's Node binary, xz-compressed
#   app.tar.xz       the checkout's sources, tests, benches, bundled model and texts, and the
#                    node_modules they need (webgpu's linux-x64 binary only; no TypeScript compiler)
#   vulkan/          the Vulkan loader and GL/EGL libraries (apt-get download + dpkg -x), for a
#                    machine whose image lacks them
#   device-check.sh  the check itself (a copy of bench/device-check.sh)
#   MANIFEST         what is in it, with sizes
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/device}" && cd "${1:-$ROOT/device}" && pwd)"
LIMIT=$((64 * 1024 * 1024))
cd "$ROOT"
[ -d node_modules/webgpu ] || { echo "device-prepare: run npm ci first" >&2; exit 1; }
rm -rf "${OUT:?}"/*

echo "node $(node --version): compressing $(command -v node)"
xz -T0 -9 -c "$(command -v node)" > "$OUT/node.xz"

echo "app: sources, tests, benches, models, node_modules"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/app"
cp -r package.json package-lock.json tsconfig.json tsconfig.build.json vitest.config.ts src test bench models data bin "$STAGE/app/"
# the modules, without other platforms' GPU binaries and without what only builds or type-checks
tar -C "$ROOT" -cf - \
  --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' --exclude='node_modules/webgpu/dist/linux-arm64' \
  --exclude='node_modules/typescript' --exclude='node_modules/@types' --exclude='node_modules/.cache' --exclude='node_modules/playwright-core' \
  node_modules | tar -C "$STAGE/app" -xf -
# dist/ built now, so the CLI runs without a compiler there
npm run --silent build
cp -r dist "$STAGE/app/"
tar -C "$STAGE" -cf - app | xz -T0 -9 > "$OUT/app.tar.xz"

echo "vulkan: loader and GL libraries (apt-get download, dpkg -x)"
mkdir -p "$STAGE/debs" "$OUT/vulkan"
if (cd "$STAGE/debs" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1); then
  for deb in "$STAGE"/debs/*.deb; do dpkg -x "$deb" "$OUT/vulkan"; done
  rm -rf "$OUT/vulkan/usr/share"
else
  echo "device-prepare: apt-get download failed (no Debian mirror?); the check will use the device's own libraries" >&2
fi

cp "$ROOT/bench/device-check.sh" "$OUT/device-check.sh"
chmod +x "$OUT/device-check.sh"
{
  echo "spikelm device folder, prepared $(date -u +%FT%TZ) from commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "node $(node --version)"
  (cd "$OUT" && find . -type f -printf '%s %p\n' | sort -k2)
} > "$OUT/MANIFEST"
TOTAL=$(du -sb "$OUT" | cut -f1)
echo "prepared $OUT: $((TOTAL / 1024 / 1024)) MiB"
if [ "$TOTAL" -gt "$LIMIT" ]; then
  echo "device-prepare: $OUT is $TOTAL bytes, over the 64 MiB limit" >&2
  exit 1
fi
