#!/usr/bin/env bash
# GPU acceptance in one call of the device tool (one H200, 16 cores, no network; see README):
#   env        machine, torch, CUDA, what the image has
#   install    the carried wheels (`make gpu-bundle`) into a --target folder over the image's
#              torch (PYTHONPATH), --no-index --no-deps
#   build      mmcv 2.1.0's ops from the carried source, CPU ops only (the GPU hidden, FORCE_CUDA
#              unset): none of our configs calls a compiled mmcv op, and the CUDA ones would
#              take far longer; a prebuilt mmcv wheel in the bundle is used instead if present
#   import     mmcv._ext, mmseg, handbone_mmseg under that torch
#   smoke      benchmarks/gpu_smoke.sh: HRNet-W48 + OCR at 1024 with AMP, TTA test, Dice
#   unetpp     the same for the first configs/unetpp_*_handbone.py (UNETPP_CONFIG), if any
#   dist-gloo  tools/train.py as 2 ranks sharing the one GPU, resuming the smoke checkpoint
#              (the dry run: tools/dist_train.sh, 2 CPU processes)
#   ops        every config: one AMP training step and one prediction on the device, with each
#              call into mmcv._ext counted
#   dist-nccl  dist-gloo on NCCL (expected to fail: NCCL refuses two ranks on one device)
#   report     tools/visualize.py on the smoke's test submission (figures)
# Each stage runs under a time cap cut to what the budget leaves; a failed stage is recorded
# and the next runs where it can; a summary ends the output. Logs, figures and the built mmcv
# wheel go to $OUT (at most 8 files come back from the device tool).
#
#   bash benchmarks/gpu_run.sh                  # there: run(carry=["gpu_bundle"], timeout_s=600)
#   GPU_RUN_DRY=1 bash benchmarks/gpu_run.sh    # here: CPU, tiny sizes, a fresh Python 3.11
#                                               # venv standing in for the GPU image
# Settings (environment): OUT (default WORK/out), GPU_RUN_WORK (work_dirs/gpu_run, or
# work_dirs/gpu_run_dry), GPU_RUN_BUNDLE (gpu_bundle), GPU_RUN_PYTHON (the image's
# /opt/torch/.venv/bin/python3, else python3; the dry run's base venv), GPU_RUN_BUDGET_S (540:
# the stages end by then, leaving a 600 s call time to pack and return), GPU_RUN_JOBS
# (compile jobs, nproc), GPU_RUN_WHEELS (where a built mmcv wheel is kept; the dry run keeps
# it across runs in gpu_dryrun/wheels, GPU_RUN_REBUILD=1 builds anew), SMOKE_PATIENTS,
# SMOKE_ITERS, UNETPP_CONFIG, UNETPP_ITERS, UNETPP_EXTRA (--cfg-options for the UNet++ run),
# DIST_ITERS, WORKERS.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export REPO=$PWD

export DRY=${GPU_RUN_DRY:-0}
if [ "$DRY" = 1 ]; then
    export WORK=${GPU_RUN_WORK:-work_dirs/gpu_run_dry}
    BUDGET_S=${GPU_RUN_BUDGET_S:-7200}
    CAP_SCALE=4  # the stage caps below are the GPU's; 2 shared cores are far slower
    export WHEELS=${GPU_RUN_WHEELS:-gpu_dryrun/wheels}
    export PYTHON=${GPU_RUN_PYTHON:-$REPO/gpu_dryrun/base/bin/python}
    export SIZE=256 SMOKE_PATIENTS=${SMOKE_PATIENTS:-5} SMOKE_ITERS=${SMOKE_ITERS:-2}
    export SMOKE_CONFIG=configs/tiny_cpu_handbone.py AMP=0 WORKERS=${WORKERS:-0}
    export DIST_ITERS=${DIST_ITERS:-2} OPS_SIZE=64 UNETPP_ITERS=${UNETPP_ITERS:-2}
else
    export WORK=${GPU_RUN_WORK:-work_dirs/gpu_run}
    BUDGET_S=${GPU_RUN_BUDGET_S:-540}
    CAP_SCALE=1
    export WHEELS=${GPU_RUN_WHEELS:-$WORK/wheels}
    default_python=$(command -v python3)
    if [ -x /opt/torch/.venv/bin/python3 ]; then default_python=/opt/torch/.venv/bin/python3; fi
    export PYTHON=${GPU_RUN_PYTHON:-$default_python}
    export SIZE=2048 SMOKE_PATIENTS=${SMOKE_PATIENTS:-16} SMOKE_ITERS=${SMOKE_ITERS:-100}
    export SMOKE_CONFIG=configs/hrnet_w48_handbone.py AMP=1 WORKERS=${WORKERS:-8}
    export DIST_ITERS=${DIST_ITERS:-10} OPS_SIZE=256 UNETPP_ITERS=${UNETPP_ITERS:-100}
fi
absolute() { case $1 in /*) echo "$1" ;; *) echo "$REPO/$1" ;; esac; }
WORK=$(absolute "$WORK")
WHEELS=$(absolute "$WHEELS")
OUT=$(absolute "${OUT:-$WORK/out}")
BUNDLE=$(absolute "${GPU_RUN_BUNDLE:-gpu_bundle}")
export WORK WHEELS OUT BUNDLE
export SITE=$WORK/site LOGS=$WORK/logs NOTES=$WORK/notes
export DATA=$WORK/data_$SIZE
export UNETPP_CONFIG=${UNETPP_CONFIG:-} UNETPP_EXTRA=${UNETPP_EXTRA:-}
export JOBS=${GPU_RUN_JOBS:-$(nproc)}
export REBUILD=${GPU_RUN_REBUILD:-0}
RESERVE_S=15  # packing $OUT after the last stage
MIN_STAGE_S=20

rm -rf "$LOGS" "$NOTES" "$SITE"  # data and the built mmcv wheel are kept
mkdir -p "$OUT" "$LOGS" "$NOTES" "$WHEELS"
exec 3>&1 4>&2
exec > >(tee "$OUT/gpu_run.log") 2>&1
TEE_PID=$!

# The carried site folder first, then the repository (handbone_mmseg, tools' imports).
export PYTHONPATH=$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}
export PATH=$SITE/bin:$PATH
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

note() { echo "$*" >> "$NOTES/$STAGE"; echo "note: $*"; }
SKIP=99  # a stage function's return code for "nothing to do here"

stage_dry_base() {
    # The GPU image's stand-in: a Python 3.11 venv with only what the image has (ON_GPU in
    # benchmarks/gpu_bundle.py); whatever else the stack needs must come from the bundle.
    local base=$REPO/gpu_dryrun/base
    if [ -f "$base/.ok" ]; then note "reusing $base"; return 0; fi
    rm -rf "$base"
    python3.11 -m venv "$base"
    mapfile -t pkgs < <(python3 -c 'import sys; sys.path.insert(0, "benchmarks")
import gpu_bundle; print("\n".join(gpu_bundle.DRY_RUN_BASE))')
    "$base/bin/python" -m pip install -q --disable-pip-version-check "${pkgs[@]}"
    # PyPI's torchvision is built for the CUDA torch: under this CPU torch it cannot import
    # without the shim (the GPU image's torchvision matches its torch)
    "$base/bin/python" tools/torchvision_cpu_shim.py
    touch "$base/.ok"
}

stage_env() {
    date -u
    uname -srm
    echo "cores: $(nproc)"
    free -g | head -2
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
    if command -v nvcc > /dev/null; then nvcc --version | tail -2; fi
    command -v ninja > /dev/null && echo "ninja on PATH: $(ninja --version)"
    # mmcv's build needs a C++ compiler and Python's headers
    command -v g++ > /dev/null && g++ --version | head -1
    "$PYTHON" - <<'EOF'
import importlib.metadata as md
import sys
import sysconfig
from pathlib import Path

import torch
print(f'python {sys.version.split()[0]} at {sys.executable}, Python.h: '
      f'{(Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()}')
print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN '
      f'{torch.backends.cudnn.version()}, GPU: '
      f'{torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}')
for name in ('numpy', 'opencv-python', 'opencv-python-headless', 'matplotlib', 'scipy', 'timm',
             'torchvision', 'setuptools', 'wheel', 'ninja', 'regex', 'rich', 'pyyaml',
             'mmengine', 'mmcv', 'mmsegmentation'):
    try:
        print(f'{name} {md.version(name)}')
    except md.PackageNotFoundError:
        print(f'{name} -')
EOF
}

stage_install() {
    rm -rf "$SITE"
    # PYTHONPATH names $SITE, which this creates: pip itself must not run from it.
    PYTHONPATH='' "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps \
        --no-compile --no-cache-dir --find-links "$BUNDLE" --target "$SITE" \
        -r "$BUNDLE/requirements.txt"
    "$PYTHON" -c 'import setuptools, pkg_resources; print("setuptools", setuptools.__version__, "from", setuptools.__file__)'
}

# Installs an mmcv wheel into $SITE; fails unless its compiled ops load under this torch.
install_mmcv() {
    rm -rf "$SITE"/mmcv "$SITE"/mmcv-*.dist-info
    PYTHONPATH='' "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps \
        --no-compile --no-cache-dir --target "$SITE" --upgrade "$1" &&
        "$PYTHON" -c 'import mmcv._ext'
}

stage_build() {
    local tag wheel t
    tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    # A wheel an earlier call built and brought back (README), or one an earlier dry run kept
    for wheel in "$BUNDLE"/mmcv-2.1.0-"$tag"-*.whl "$WHEELS"/mmcv-2.1.0-"$tag"-*.whl; do
        { [ -f "$wheel" ] && [ "$REBUILD" != 1 ]; } || continue
        if install_mmcv "$wheel"; then
            note "installed the prebuilt $(basename "$wheel") (GPU_RUN_REBUILD=1 builds anew)"
            return 0
        fi
        note "$wheel does not load under this torch: building from source"
    done
    rm -f "$WHEELS"/mmcv-2.1.0-"$tag"-*.whl
    t=$SECONDS
    # The GPU hidden and FORCE_CUDA unset: mmcv's setup.py then compiles the CPU ops only.
    # --no-build-isolation: an isolated build would not see torch and would silently skip
    # the ops; setuptools < 82 (pkg_resources) comes from $SITE, ninja from $SITE/bin.
    if ! env -u FORCE_CUDA CUDA_VISIBLE_DEVICES='' MMCV_WITH_OPS=1 MAX_JOBS="$JOBS" \
        "$PYTHON" -m pip wheel --disable-pip-version-check --no-index --no-deps \
        --no-build-isolation --no-cache-dir -w "$WHEELS" "$BUNDLE/mmcv-2.1.0.tar.gz" \
        > "$LOGS/mmcv_build.log" 2>&1; then
        tail -n 40 "$LOGS/mmcv_build.log"
        return 1
    fi
    wheel=$(ls "$WHEELS"/mmcv-2.1.0-"$tag"-*.whl)
    note "built $(basename "$wheel") ($(( $(stat -c %s "$wheel") / 2**20 )) MiB) in" \
        "$(( SECONDS - t )) s with MAX_JOBS=$JOBS"
    install_mmcv "$wheel" || return 1
    if [ "$DRY" != 1 ]; then
        # Back to the device tool in parts (16 MiB a file at most): joined into gpu_bundle/,
        # the next call installs it instead of building (README, GPU)
        split -b 15M -d "$wheel" "$OUT/$(basename "$wheel").part"
    fi
}

stage_import() {
    "$PYTHON" - <<'EOF'
import mmcv
import mmcv._ext
import mmengine
import mmseg
import mmseg.models  # imports mmcv.ops (point_sample) unconditionally
import torch
from mmcv.ops import get_compiler_version, get_compiling_cuda_version

import handbone_mmseg

print(f'torch {torch.__version__} (CUDA available: {torch.cuda.is_available()}), mmengine '
      f'{mmengine.__version__}, mmcv {mmcv.__version__} (ops compiled by '
      f'{get_compiler_version()}, CUDA {get_compiling_cuda_version()}), mmseg '
      f'{mmseg.__version__}, handbone_mmseg from {handbone_mmseg.__file__}')
EOF
}

# The options every train/test run of the smoke data takes (gpu_smoke.sh's, for dist_train).
loader_opts() {
    local persistent=False
    [ "$1" -gt 0 ] && persistent=True
    for split in train val test; do
        echo "${split}_dataloader.num_workers=$1 ${split}_dataloader.persistent_workers=$persistent"
    done
}

stage_smoke() {
    CONFIG=$SMOKE_CONFIG ITERS=$SMOKE_ITERS PATIENTS=$SMOKE_PATIENTS \
        ROOT_DIR=$WORK/smoke bash benchmarks/gpu_smoke.sh
}

stage_unetpp() {
    local config=$UNETPP_CONFIG
    if [ -z "$config" ]; then  # the first UNet++ model config, the CPU one in the dry run
        for candidate in configs/unetpp_*_handbone.py; do
            case $candidate in
                *tiny_cpu*) [ "$DRY" = 1 ] && config=$candidate ;;
                *) [ "$DRY" != 1 ] && [ -f "$candidate" ] && config=$candidate && break ;;
            esac
        done
    fi
    if [ -z "$config" ]; then note "no UNet++ config in configs/"; return "$SKIP"; fi
    note "$config"
    CONFIG=$config ITERS=$UNETPP_ITERS PATIENTS=$SMOKE_PATIENTS ROOT_DIR=$WORK/unetpp \
        EXTRA=$UNETPP_EXTRA bash benchmarks/gpu_smoke.sh
}

# tools/train.py as 2 ranks sharing GPU 0. tools/dist_train.sh (torchrun) gives rank 1
# LOCAL_RANK=1, and mmengine calls torch.cuda.set_device(LOCAL_RANK) and wraps DDP with
# device_ids=[LOCAL_RANK]: an invalid device ordinal on a one-GPU machine. So both ranks are
# started here with LOCAL_RANK=0.
launch_pair() {
    local rank rc=0 pids=()
    for rank in 0 1; do
        RANK=$rank LOCAL_RANK=0 WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 \
            "$PYTHON" tools/train.py "$@" --launcher pytorch &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
    return "$rc"
}

# 2 ranks on the one GPU (2 CPU processes through tools/dist_train.sh in the dry run),
# resuming the smoke's checkpoint for DIST_ITERS more iterations, validation at the end, then
# the distributed exit.
dist_train() {
    local backend=$1 work=$WORK/dist_$1 ckpt=$WORK/smoke/work/iter_$SMOKE_ITERS.pth resume=()
    local total=$DIST_ITERS
    rm -rf "$work"
    if [ -f "$ckpt" ]; then
        resume=(--resume "$ckpt")
        total=$(( SMOKE_ITERS + DIST_ITERS ))
    else
        note "no smoke checkpoint: training from scratch"
    fi
    local workers=$(( WORKERS / 2 )) launcher=(launch_pair "$SMOKE_CONFIG")
    if [ "$DRY" = 1 ]; then launcher=(bash tools/dist_train.sh "$SMOKE_CONFIG" 2); fi
    # shellcheck disable=SC2046
    MASTER_PORT=$(( 29500 + RANDOM % 1000 )) "${launcher[@]}" \
        --work-dir "$work" "${resume[@]}" --cfg-options data_root="$DATA" model.pretrained=None \
        $(loader_opts "$workers") env_cfg.dist_cfg.backend="$backend" \
        train_cfg.max_iters="$total" train_cfg.val_interval="$total" \
        default_hooks.checkpoint.interval="$total" default_hooks.logger.interval=1 \
        2>&1 | tee "$LOGS/dist_$backend.log"
    local rc=$?
    if [ "$rc" != 0 ]; then
        note "$(grep -m 3 -iE 'error|duplicate|abort' "$LOGS/dist_$backend.log" | cut -c1-200 \
            | tr '\n' ' ')"
    fi
    return "$rc"
}
stage_dist_nccl() {
    if [ "$DRY" = 1 ]; then note "GPU only"; return "$SKIP"; fi
    dist_train nccl
}
stage_dist_gloo() { dist_train gloo; }

stage_ops() {
    "$PYTHON" - "$OPS_SIZE" "$OUT/mmcv_ops.txt" configs/*_handbone.py <<'EOF'
"""One AMP training step and one prediction per config, counting the calls into mmcv._ext."""
import sys
import time
import traceback
from collections import Counter

import mmcv._ext as ext
import torch

calls = Counter()
# Ops look their kernels up on the module at each call (ext_module.NAME(...)): wrapping the
# module's functions before mmseg is imported catches every compiled mmcv op that runs.
for name in [n for n in dir(ext) if not n.startswith('_') and callable(getattr(ext, n))]:
    def counted(*args, _fn=getattr(ext, name), _name=name, **kwargs):
        calls[_name] += 1
        return _fn(*args, **kwargs)
    setattr(ext, name, counted)

from mmengine.config import Config  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import handbone_mmseg  # noqa: E402,F401

register_all_modules(init_default_scope=True)
size, out, configs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
device = 'cuda' if torch.cuda.is_available() else 'cpu'
lines = [f'device {device}, input {size}x{size}, AMP (float16) {device == "cuda"}']


def sample(label=None):
    s = SegDataSample(metainfo=dict(ori_shape=(size, size), img_shape=(size, size),
                                    pad_shape=(size, size)))
    if label is not None:
        s.gt_sem_seg = PixelData(data=label)
    return s


failed = 0
for path in configs:
    calls.clear()
    t = time.perf_counter()
    try:
        cfg = Config.fromfile(path)
        cfg.model.pretrained = None  # offline: random weights
        for key in ('pretrained', 'init_cfg'):
            if cfg.model.backbone.get(key):
                cfg.model.backbone[key] = None
        cfg.model.data_preprocessor.size = (size, size)
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).to(device)
        model.train()
        label = torch.randint(0, 1 << 29, (1, size, size), device=device)
        inputs = torch.rand(2, 3, size, size, device=device)
        with torch.autocast(device, enabled=device == 'cuda'):
            losses = model.loss(inputs, [sample(label), sample(label)])
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        if not torch.isfinite(total):
            raise RuntimeError(f'loss {total.item()}')
        model.eval()
        with torch.no_grad(), torch.autocast(device, enabled=device == 'cuda'):
            pred = model.predict(inputs[:1], [sample()])[0].pred_sem_seg.data
        result = f'ok: loss {total.item():.3f}, prediction {tuple(pred.shape)}'
    except Exception as err:  # one line per config, the traceback to the log
        traceback.print_exc()
        result = f'FAILED: {type(err).__name__}: {str(err)[:300]}'
        failed += 1
    used = ', '.join(f'{k} x{v}' for k, v in sorted(calls.items())) or 'none'
    lines.append(f'{path}: {result} | {time.perf_counter() - t:.1f} s | mmcv._ext calls: {used}')
    print(lines[-1], flush=True)
ops = sorted(m for m in sys.modules if m.startswith('mmcv.ops.'))
lines.append(f'mmcv.ops modules imported ({len(ops)}): {" ".join(ops)}')
open(out, 'w').write('\n'.join(lines) + '\n')
sys.exit(1 if failed else 0)
EOF
}

stage_report() {
    local sub=$WORK/smoke/test/submission.csv
    if [ ! -f "$sub" ]; then note "no smoke submission"; return 1; fi
    "$PYTHON" tools/visualize.py "$sub" --data-root "$DATA" --img-dir test/DCM \
        --ann-dir test_labels/outputs_json --out "$WORK/smoke/report" --worst 3
}

export SKIP
export -f note stage_dry_base stage_env stage_install install_mmcv stage_build stage_import loader_opts \
    stage_smoke stage_unetpp launch_pair dist_train stage_dist_nccl stage_dist_gloo stage_ops stage_report

RESULTS=()
T0=$SECONDS
# stage NAME CAP_S FUNCTION: FUNCTION in its own process group under a cap cut to the budget
# left (timeout ends the whole group: torchrun's ranks, loader workers, nvidia-smi).
stage() {
    local name=$1 cap=$2 fn=$3 left t rc status
    left=$(( BUDGET_S - (SECONDS - T0) - RESERVE_S ))
    if (( left < MIN_STAGE_S )); then
        RESULTS+=("$(printf '%-10s %-8s %5s s  %s' "$name" skipped 0 "budget spent")")
        return
    fi
    cap=$(( cap * CAP_SCALE ))
    (( cap > left )) && cap=$left
    echo
    echo "=== [$(date -u +%H:%M:%S) +$(( SECONDS - T0 )) s] $name (at most $cap s)"
    t=$SECONDS
    STAGE=$name timeout -k 15 "$cap" bash -c "set -o pipefail; $fn"
    rc=$?
    case $rc in
        0) status=ok ;;
        "$SKIP") status=skipped ;;
        124|137) status=TIMEOUT ;;
        *) status="FAILED($rc)" ;;
    esac
    echo "=== [$(date -u +%H:%M:%S) +$(( SECONDS - T0 )) s] $name: $status in $(( SECONDS - t )) s"
    RESULTS+=("$(printf '%-10s %-8s %5s s  %s' "$name" "$status" $(( SECONDS - t )) \
        "$(cat "$NOTES/$name" 2> /dev/null | tr '\n' ' ')")")
}

echo "gpu_run: $( [ "$DRY" = 1 ] && echo 'DRY RUN (CPU)' || echo GPU ), budget $BUDGET_S s," \
    "work $WORK, out $OUT, python $PYTHON"
if [ "$DRY" = 1 ]; then stage dry-base 1800 stage_dry_base; fi
stage env 60 stage_env
stage install 120 stage_install
stage build 2400 stage_build
stage import 120 stage_import
stage smoke 240 stage_smoke
stage unetpp 150 stage_unetpp
# gloo before NCCL: NCCL refuses two ranks on one device, so the NCCL run is only a check
stage dist-gloo 120 stage_dist_gloo
stage ops 120 stage_ops
stage dist-nccl 60 stage_dist_nccl
stage report 60 stage_report

# Back to the device tool: the console log, summaries, mmcv_ops.txt, the built mmcv wheel (in
# parts) and one archive of the logs, configs, scalars, Dice tables, submissions and report figures.
pack() {
    tar -czf "$OUT/logs.tar.gz" -C "$WORK" --exclude='*.pth' --exclude='./data_*' \
        --exclude=./site --exclude=./wheels --exclude=./out --exclude=probs "$@" . 2> /dev/null
}
pack
if [ "$(stat -c %s "$OUT/logs.tar.gz")" -gt $(( 15 * 2**20 )) ]; then
    pack --exclude='*.png'  # 16 MiB a file at most comes back
fi
summary=$OUT/summary.txt
{
    echo "gpu_run $( [ "$DRY" = 1 ] && echo '(dry run, CPU)' ) $(date -u +%FT%TZ):" \
        "$(( SECONDS - T0 )) s of $BUDGET_S"
    printf '%s\n' "${RESULTS[@]}"
    cat "$WORK"/smoke/summary.txt "$WORK"/unetpp/summary.txt 2> /dev/null
    echo "out: $(cd "$OUT" && ls | tr '\n' ' ')"
} > "$summary"
echo
cat "$summary"
exec 1>&3 2>&4
wait "$TEE_PID" 2> /dev/null
! grep -qE '^\S+ +(FAILED|TIMEOUT)' "$summary"
