#!/usr/bin/env bash
# The GPU check for a machine with a real GPU and no network, run from the folder
# bench/device-prepare.sh made (it needs no Node of its own there, nor npm):
#
#   bash device-check.sh [--dry-run] [REPORT_DIR]       # default REPORT_DIR: ./report
#
# Steps, each recorded in REPORT_DIR (a failing step does not stop the others; the exit status is
# 1 if any required step failed):
#   info    the adapter Dawn finds (info.json); on a real run a software adapter is a failure
#   parity  every WGSL kernel and the model-level GPU tests against their CPU twins (vitest, CI=true:
#           a missing adapter fails), including every forced variant and the f16/subgroup paths where
#           the adapter has the features
#   bench   GPU matmul shapes and the GPT-2-small-shaped scale suite on the GPU (ANN prefill 128 and
#           decode; the default SNN conversion, prefill and decode)
#   profile GPU time per kernel kind per decoded token (spikelm bench --profile, stories260k), where
#           the adapter has timestamp-query
# A real run forces Dawn's Vulkan backend (SPIKELM_GPU=vulkan) and runs the vitest project `vulkan`.
#   torch   the same GPT-2-small shape in PyTorch eager on this machine's GPU, if `import torch` works
# and writes report.md. --dry-run runs the plumbing on whatever adapter exists (llvmpipe on the
# development machine) with the quick benchmarks and the kernel tests only.
# Known location of NVIDIA's Vulkan driver manifest in containers: VK_DRIVER_FILES is set to it when
# the loader's default search would miss it.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
REPORT="$(mkdir -p "${1:-$HERE/report}" && cd "${1:-$HERE/report}" && pwd)"
WORK="${SPIKELM_DEVICE_WORK:-${TMPDIR:-/tmp}/spikelm-device-run}"
mkdir -p "$WORK"
FAILED=()
STATUS=()
log() { echo "device-check: $*" | tee -a "$REPORT/check.log" >&2; }
step() { # name, required (1/0), command...
  local name="$1" required="$2"; shift 2
  local t0=$SECONDS
  log "step $name: $*"
  if "$@" >"$REPORT/$name.log" 2>&1; then
    STATUS+=("| $name | passed | $((SECONDS - t0)) s |")
  else
    local rc=$?
    STATUS+=("| $name | FAILED (exit $rc) | $((SECONDS - t0)) s |")
    [ "$required" = 1 ] && FAILED+=("$name")
    log "step $name failed (exit $rc); see $REPORT/$name.log"
  fi
}

# Node: the device's own if it is ≥ 20, else the one shipped here
NODE="$(command -v node || true)"
[ "${SPIKELM_DEVICE_NODE:-}" = shipped ] && NODE="" # use the shipped Node even if one is installed
if [ -z "$NODE" ] || [ "$("$NODE" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" -lt 20 ]; then
  [ -f "$HERE/node.xz" ] || { log "no Node ≥ 20 here and no node.xz beside this script"; exit 1; }
  xz -dc "$HERE/node.xz" > "$WORK/node" && chmod +x "$WORK/node"
  NODE="$WORK/node"
fi
log "node: $NODE ($("$NODE" --version))"

# the application
if [ -f "$HERE/app.tar.xz" ]; then
  rm -rf "$WORK/app" && xz -dc "$HERE/app.tar.xz" | tar -C "$WORK" -xf -
  APP="$WORK/app"
else
  APP="$(cd "$HERE/.." && pwd)" # run from a checkout (bench/device-check.sh)
fi
[ -f "$APP/dist/cli/main.js" ] && [ -f "$APP/bin/spikelm.js" ] || { log "no built application at $APP (bin/spikelm.js, dist/)"; exit 1; }

# libraries: the shipped loader when the image has none; NVIDIA's manifest where containers put it
if [ -d "$HERE/vulkan/usr/lib/x86_64-linux-gnu" ] && ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
  export LD_LIBRARY_PATH="$HERE/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  log "using the shipped Vulkan loader"
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ ! -f /etc/vulkan/icd.d/nvidia_icd.json ] && [ ! -f /usr/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  log "VK_DRIVER_FILES=$VK_DRIVER_FILES"
fi
export EGL_PLATFORM="${EGL_PLATFORM:-surfaceless}"
# Dawn's Vulkan backend, the path Linux GPUs take: never a fallback to OpenGL ES (on a real run a
# software adapter is a failure: the info step); the dry run takes whatever the development machine has
[ "$DRY" = 1 ] || export SPIKELM_GPU=vulkan
cd "$APP"

adapter_is_hardware() {
  "$NODE" bin/spikelm.js info --json > "$REPORT/info.json" || return 1
  "$NODE" -e 'const j = require(process.argv[1]); const g = j.backends.gpu;
    console.log(g.available ? `${g.description} (${g.device}); software: ${g.software}; features: ${g.features.join(" ")}` : `no adapter: ${g.reason}`);
    process.exit(g.available && (!g.software || process.argv[2] === "1") ? 0 : 1)' "$REPORT/info.json" "$DRY"
}
step info 1 adapter_is_hardware

# the vitest project of the adapter's path only (vitest.config.ts: the opengles project needs Mesa)
PROJECT=vulkan
[ "$DRY" = 1 ] && [ "$("$NODE" -p 'require(process.argv[1]).backends.gpu.dawn_backend' "$REPORT/info.json" 2>/dev/null)" != vulkan ] && PROJECT=opengles
VITEST=(node_modules/vitest/vitest.mjs run --project "$PROJECT" --reporter=default --reporter=json --outputFile="$REPORT/parity.json")
if [ "$DRY" = 1 ]; then
  step parity 1 env CI=true SPIKELM_VULKAN_TESTS=1 SPIKELM_DAWN_ENABLE=vulkan_enable_f16_on_nvidia timeout 600 "$NODE" "${VITEST[@]}" test/gpu-kernels.test.ts test/decode-loop.test.ts test/gpu-f16.test.ts
  step bench 1 env SPIKELM_BENCH_BACKENDS=gpu timeout 900 "$NODE" --import tsx bench/run.ts matmul scale --quick --json "$REPORT/bench.json"
else
  # f16 arithmetic is tested too (test/gpu-f16.test.ts): on NVIDIA, Dawn offers shader-f16 only with
  # its vulkan_enable_f16_on_nvidia toggle, which SPIKELM_DAWN_ENABLE passes
  step parity 1 env CI=true SPIKELM_VULKAN_TESTS=1 SPIKELM_DAWN_ENABLE=vulkan_enable_f16_on_nvidia timeout 240 "$NODE" "${VITEST[@]}" test/gpu-kernels.test.ts test/gpu-model.test.ts test/decode-loop.test.ts test/profile.test.ts test/gpu-f16.test.ts
  step bench 1 env SPIKELM_BENCH_BACKENDS=gpu timeout 240 "$NODE" --import tsx bench/run.ts matmul scale --json "$REPORT/bench.json"
fi
# GPU time per kernel kind per decoded token (timestamp queries), where the adapter has them
step profile 0 timeout 90 "$NODE" bin/spikelm.js bench --model models/stories260k --profile --tokens 16 --out "$REPORT"
if command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then
  step torch 0 timeout 120 sh -c "python3 '$APP/bench/torch_gpt2.py' > '$REPORT/torch.json'"
else
  STATUS+=("| torch | not run: no python3 with torch here | — |")
fi

{
  echo "# spikelm device check$([ "$DRY" = 1 ] && echo ' (dry run)')"
  echo
  echo "$(date -u +%FT%TZ) on $(hostname); $(head -1 "$HERE/MANIFEST" 2>/dev/null || echo 'run from a checkout')"
  echo
  echo "Adapter: $(cat "$REPORT/info.log" 2>/dev/null | tail -1)"
  echo
  echo "Limits and features: info.json (backends.gpu). shader-f16: Dawn hides it on NVIDIA unless its"
  echo "vulkan_enable_f16_on_nvidia toggle is set, so the parity step (which tests the opt-in f16"
  echo "arithmetic, SPIKELM_GPU_ARITH=f16) sets it through SPIKELM_DAWN_ENABLE; the info step and the"
  echo "benchmarks run without it (f16 weights need no feature: unpack2x16float)."
  echo
  echo "| step | result | time |"
  echo "|---|---|---|"
  printf '%s\n' "${STATUS[@]}"
  echo
  if [ -f "$REPORT/bench.json" ]; then
    echo "## Benchmarks (GPU)"
    echo
    "$NODE" -e 'const { rows } = require(process.argv[1]);
      for (const r of rows) console.log(`- ${r.suite} ${r.name}: ${Object.entries(r.metrics).filter(([, v]) => typeof v === "number").map(([k, v]) => `${k} ${+v.toPrecision(4)}`).join(", ")}`);' "$REPORT/bench.json"
    echo
  fi
  if [ -f "$REPORT/profile.log" ] && grep -q 'decoded tokens' "$REPORT/profile.log"; then
    echo "## Kernel profile (stories260k decode)"
    echo
    echo '```'
    grep -v -e '^spikelm:' -e '^Warning:' "$REPORT/profile.log"
    echo '```'
    echo
  fi
  if [ -f "$REPORT/torch.json" ]; then
    echo "## PyTorch eager reference"
    echo
    echo '```'
    cat "$REPORT/torch.json"
    echo '```'
  fi
  if [ -f "$REPORT/parity.json" ]; then
    echo "## Parity"
    echo
    "$NODE" -e 'const j = require(process.argv[1]); console.log(`${j.numPassedTests} passed, ${j.numFailedTests} failed, ${j.numPendingTests + (j.numTodoTests ?? 0)} not run, of ${j.numTotalTests}`);
      for (const f of j.testResults) for (const t of f.assertionResults) if (t.status !== "passed") console.log(`- ${t.status}: ${t.fullName}`);' "$REPORT/parity.json"
  fi
} > "$REPORT/report.md"
log "report: $REPORT/report.md"
if [ "${#FAILED[@]}" -gt 0 ]; then
  log "failed: ${FAILED[*]}"
  exit 1
fi
