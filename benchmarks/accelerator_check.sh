#!/usr/bin/env bash
# The prepared accelerator check: one script for a machine with an NVIDIA GPU.
#
#   bash benchmarks/accelerator_check.sh            # writes bench_results/accelerator_check.json
#   PYTHON=python3 bash benchmarks/accelerator_check.sh   # an image whose python3 has jax for CUDA, offline
#
# 1. sets up the project (.venv, as `make test` does) and installs the CUDA
#    build of the jax version the project resolved (`jax[cuda12]==VERSION`);
#    with PYTHON set, uses that interpreter and its packages as they are (a
#    machine image with jax for CUDA and no package index) and runs the
#    project from this checkout;
# 2. tests the Pallas kernels of the linear memories, the chunk-start ones and
#    Hope's main memory compiled by Triton for the GPU against the reference,
#    slow tests included (tests/test_pallas_kernels.py);
# 3. measures tokens/s and the fraction of the GPU's bfloat16 matmul rate
#    (an 8192 x 8192 product, measured in the same run) for the Transformer,
#    Gated DeltaNet, Titans and Hope byte LMs at width 1024 in bfloat16, then
#    Gated DeltaNet, Titans and Hope with their chunks chained by the Pallas
#    kernels (`model.mixer.kernel=pallas`, models `gated_deltanet_pallas`,
#    `titans_pallas` and `hope_pallas`; `benchmarks/lm_throughput.py`);
# 4. runs the device-independent core of the test suite on the GPU with the
#    time left (every memory's fast forms against its token-by-token
#    reference, the update rules and the optimizers): tests that need 8
#    devices or compare with numbers stored on a CPU are not in it;
# 5. writes one JSON file with the outcome of both test stages, the rows, the
#    packages and the machine.
#
# Every stage has a time limit, and none runs past one deadline (BUDGET, 570 s
# from the start), so one run ends within 10 minutes; a model whose
# compilation and timing do not fit is recorded as missing, not waited for.
# On an H200 the three stages take longer than that (docs/benchmarks.md, "The
# accelerator check"): STAGES splits them between runs (each in its own
# CONTLEARN_BENCH_DIR: a run clears its folder's earlier results).
# Settings (environment): PYTHON (unset: the project's .venv), PLATFORM (cuda;
# "cpu" checks the script itself on a machine without a GPU, skipping the
# install), STAGES (kernels,throughput,core), WIDTH (1024), MODELS, BATCH
# (16), SEQ (256), STEPS (8), MATMUL (8192), MODEL_LIMIT (seconds per model,
# 100).
set -uo pipefail
cd "$(dirname "$0")/.."

PLATFORM=${PLATFORM:-cuda}
WIDTH=${WIDTH:-1024}
MODELS=${MODELS:-transformer,gated_deltanet,titans,hope,gated_deltanet_pallas,titans_pallas,hope_pallas}
BATCH=${BATCH:-16}
SEQ=${SEQ:-256}
STEPS=${STEPS:-8}
MATMUL=${MATMUL:-8192}
MODEL_LIMIT=${MODEL_LIMIT:-100}
STAGES=${STAGES:-kernels,throughput,core}
BUDGET=${BUDGET:-570}
RESULTS=${CONTLEARN_BENCH_DIR:-bench_results}
mkdir -p "$RESULTS"
LOG="$RESULTS/accelerator_check.log"
: >"$LOG"
rm -rf "$RESULTS"/lm_* "$RESULTS"/accelerator_*tests.log
say() { echo "accelerator_check: $*" | tee -a "$LOG" >&2; }
# `limit S`: S seconds, or what is left before the deadline if that is less (at least 1).
limit() { local left=$((BUDGET - SECONDS)); echo $((left < $1 ? (left > 1 ? left : 1) : $1)); }

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  say "using $PY as it is, the project from $PWD"
else
  say "setting up the project"
  timeout "$(limit 240)" make -s .venv/.installed-stamp >>"$LOG" 2>&1 || { say "set-up failed; see $LOG"; exit 1; }
  PY=.venv/bin/python
  if [ "$PLATFORM" = cuda ]; then
    version=$($PY -c "import jax; print(jax.__version__)")
    say "installing jax[cuda12]==$version"
    if ! timeout "$(limit 240)" $PY -m pip install --quiet "jax[cuda12]==$version" >>"$LOG" 2>&1; then
      say "could not install the CUDA build of jax (no package index?); see $LOG"
      exit 1
    fi
  fi
fi
export JAX_PLATFORMS=$PLATFORM CONTLEARN_COMPILATION_CACHE=off
backend=$($PY -c "import jax; print(jax.default_backend(), jax.devices()[0].device_kind)") || {
  say "jax sees no $PLATFORM device"
  exit 1
}
say "backend: $backend"

$PY -c "import json, jax, jaxlib, flax, optax; print(json.dumps({m.__name__: m.__version__ for m in (jax, jaxlib, flax, optax)}))" \
  2>/dev/null >"$RESULTS/accelerator_packages.json" || echo null >"$RESULTS/accelerator_packages.json"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
  >"$RESULTS/accelerator_gpu.txt" 2>/dev/null || echo "no nvidia-smi" >"$RESULTS/accelerator_gpu.txt"

for stage in ${STAGES//,/ }; do
  [[ $stage == kernels || $stage == throughput || $stage == core ]] || { say "STAGES: no stage '$stage' (kernels, throughput, core)"; exit 2; }
done
kernel_status=none bench_status=none tests_status=none  # none: the stage did not run
if [[ ,$STAGES, == *,kernels,* ]]; then
  say "Pallas kernel tests on $PLATFORM (slow ones too; Hope's apart, stopping at its first failure)"
  kernel_status=0
  timeout "$(limit 150)" $PY -m pytest -q -m "" -p no:xdist -p no:cacheprovider --tb=short tests/test_pallas_kernels.py \
    -k "not self_modifying" >"$RESULTS/accelerator_kernel_tests.log" 2>&1 || kernel_status=$?
  timeout "$(limit 120)" $PY -m pytest -q -m "" -p no:xdist -p no:cacheprovider --tb=short -x tests/test_pallas_kernels.py \
    -k self_modifying >"$RESULTS/accelerator_hope_kernel_tests.log" 2>&1 || kernel_status=$?
  grep -E "passed|failed|^FAILED" "$RESULTS"/accelerator_{,hope_}kernel_tests.log | tee -a "$LOG" >&2
fi

if [[ ,$STAGES, == *,throughput,* ]]; then
  say "throughput of $MODELS at width $WIDTH in bfloat16"
  bench_status=0
  for model in ${MODELS//,/ }; do
    CONTLEARN_BENCH_DIR=$RESULTS/lm_$model timeout "$(limit "$MODEL_LIMIT")" $PY benchmarks/lm_throughput.py \
      --widths "$WIDTH" --models "$model" --dtype bfloat16 --batch "$BATCH" --seq "$SEQ" --steps "$STEPS" --chunks 3 \
      --matmul-size "$MATMUL" >>"$LOG" 2>&1 || { say "$model: no measurement (status $?)"; bench_status=1; }
  done
fi

if [[ ,$STAGES, == *,core,* ]]; then
  say "core tests on $PLATFORM, $((BUDGET - SECONDS)) s left"
  CORE=(tests/memories/test_forms.py tests/test_rules.py tests/test_optim.py)
  tests_status=0
  timeout "$(limit 300)" $PY -m pytest -q -p no:xdist -p no:cacheprovider --tb=short "${CORE[@]}" \
    >"$RESULTS/accelerator_tests.log" 2>&1 || tests_status=$?
  tail -3 "$RESULTS/accelerator_tests.log" | tee -a "$LOG" >&2
fi

$PY - "$RESULTS" "$tests_status" "$kernel_status" "$bench_status" <<'EOF'
import json, pathlib, sys

results = pathlib.Path(sys.argv[1])
tests_status, kernel_status, bench_status = (None if a == "none" else int(a) for a in sys.argv[2:])
last_line = lambda name: (
  ((results / name).read_text().strip().splitlines() or [""])[-1] if (results / name).exists() else "not run"
)
measured = [json.loads(p.read_text()) for p in sorted(results.glob("lm_*/lm_throughput.json"))]
report = {
  "tests": {"exit_status": tests_status, "summary": last_line("accelerator_tests.log")},
  "kernel_tests": {
    "exit_status": kernel_status,
    "summary": last_line("accelerator_kernel_tests.log"),
    "hope_summary": last_line("accelerator_hope_kernel_tests.log"),
  },
  "packages": json.loads((results / "accelerator_packages.json").read_text() or "null"),
  "gpu": (results / "accelerator_gpu.txt").read_text().strip(),
  "matmul_gflops_per_s": measured[0]["matmul_gflops_per_s"] if measured else None,
  "rows": [row for m in measured for row in m["rows"]],
  "settings": measured[0]["settings"] if measured else None,
  "machine": measured[0]["machine"] if measured else None,
  "all_measured": None if bench_status is None else bench_status == 0,
}
(results / "accelerator_check.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report))
EOF
say "wrote $RESULTS/accelerator_check.json"
for status in "$tests_status" "$kernel_status" "$bench_status"; do [[ $status == 0 || $status == none ]] || exit 1; done
