#!/usr/bin/env bash
# Colab rehearsal: every chapter, top to bottom with its default parameters, the way a reader who presses the
# Colab button runs it. A fresh venv holds only Colab's kind of packages (torch, torchvision, tensorflow, keras,
# matplotlib, ipykernel; no inception_lib, no jupyter-book), so each notebook's own install cell has to install
# the library; the Debian dataset folder is hidden, and Fashion-MNIST comes through torchvision's real download
# path from a mirror on 127.0.0.1 (INCEPTION_LIB_FASHION_MNIST_MIRROR) into an empty cache. Before each chapter
# the venv is reset to its base packages (a fresh Colab runtime per notebook). The rehearsal also plays another
# machine: CPU kernels restricted to AVX2 (ATen, oneDNN, MKL), TensorFlow's oneDNN off, one thread; and every
# output is compared with the stored one as strict nbval compares it (--no-compare: only run the chapters).
#
# Usage: .ci/colab_rehearsal.sh [--notebooks DIR] [--install-from URL] [--reuse-venv] [--keep DIR] [CHAPTER ...]
#   --notebooks DIR     the notebooks to run (default: book/); they are copied, never changed in place
#   --install-from URL  what the install cell's git+https://... address becomes
#                       (default: git+file://<this checkout>@<git rev-parse HEAD>: the committed code)
#   --reuse-venv        keep an existing .venv-colab (reset to its base packages) instead of recreating it
#   --venv-only         only (re)create .venv-colab, then stop (CI builds it while the library tests run)
#   --keep DIR          write the executed notebooks into DIR (to look at their outputs)
#   --no-compare        run the chapters without comparing their outputs with the stored ones
#   CHAPTER             run only the notebooks whose file name starts with it (e.g. 03 05_gpu)
# Environment: PY (python for the venv, default python3), MAIN_PY (the python with nbclient, default .venv's),
#              COLAB_VENV (default .venv-colab), CELL_TIMEOUT (seconds per cell, default 900).
# Exit status: 0 when every cell of every chapter ran; 1 otherwise (the chapter, cell and error are printed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PY:-python3}
MAIN_PY=${MAIN_PY:-$ROOT/.venv/bin/python}
VENV=${COLAB_VENV:-$ROOT/.venv-colab}
FMNIST_DIR=/usr/share/datasets/fashion-mnist
NOTEBOOKS=$ROOT/book
INSTALL_FROM=""
REUSE=0
VENV_ONLY=0
KEEP=()
COMPARE=(--compare "$ROOT/book/nbval_sanitize.cfg")
CHAPTERS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --notebooks) NOTEBOOKS=$(cd "$2" && pwd); shift 2 ;;
    --install-from) INSTALL_FROM=$2; shift 2 ;;
    --reuse-venv) REUSE=1; shift ;;
    --venv-only) VENV_ONLY=1; shift ;;
    --no-compare) COMPARE=(); shift ;;
    --keep) mkdir -p "$2"; KEEP=(--keep "$(cd "$2" && pwd)"); shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) CHAPTERS+=("$1"); shift ;;
  esac
done
if [ -z "$INSTALL_FROM" ]; then
  INSTALL_FROM="git+file://$ROOT@$(git rev-parse HEAD)"
  if [ -n "$(git status --porcelain -- inception_lib pyproject.toml)" ]; then
    echo "note: uncommitted changes to inception_lib/ or pyproject.toml are not rehearsed (the install is of HEAD)"
  fi
fi
[ -x "$MAIN_PY" ] || { echo "colab rehearsal: $MAIN_PY missing (run make setup first)" >&2; exit 2; }
ls "$FMNIST_DIR"/*.gz >/dev/null 2>&1 || { echo "colab rehearsal: $FMNIST_DIR missing (make system)" >&2; exit 2; }

TMP=$(mktemp -d -t colab-rehearsal.XXXXXX)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The venv: Colab's kind of packages (the versions of .venv, so that pip finds them in its cache).
start=$(date +%s)
if [ "$REUSE" = 1 ] && [ -f "$VENV/colab-base.txt" ]; then
  echo "== reusing $VENV (reset to its base packages before each chapter)"
else
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1 tensorflow-cpu==2.21.0 keras==3.15.1 \
    matplotlib ipykernel
  "$VENV/bin/python" -m pip freeze --all > "$VENV/colab-base.txt"
fi
echo "colab rehearsal: venv ready in $(( $(date +%s) - start )) s"
[ "$VENV_ONLY" = 1 ] && exit 0

# 2. The Fashion-MNIST mirror: a copy of the Debian files, served on a free port of 127.0.0.1.
mkdir -p "$TMP/mirror" "$TMP/cache" "$TMP/jupyter/kernels/colab-rehearsal" "$TMP/ipython" "$TMP/mpl"
cp "$FMNIST_DIR"/*.gz "$TMP/mirror/"
"$MAIN_PY" -u -m http.server 0 --bind 127.0.0.1 --directory "$TMP/mirror" > "$TMP/server.log" 2>&1 &
SERVER_PID=$!
PORT=""
for _ in $(seq 100); do
  PORT=$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$TMP/server.log" | head -n1)
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "colab rehearsal: the mirror did not start:" >&2; cat "$TMP/server.log" >&2; exit 1; }
MIRROR="http://127.0.0.1:$PORT/"

# 3. A kernel running the rehearsal venv's python, found through a private JUPYTER_PATH.
cat > "$TMP/jupyter/kernels/colab-rehearsal/kernel.json" <<EOF
{"argv": ["$VENV/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
 "display_name": "Colab rehearsal", "language": "python"}
EOF

# 4. What a Colab runtime has (no system dataset folder, no data or cache of ours) plus the mirror.
unset PYTHONPATH INCEPTION_LIB_DATA VIRTUAL_ENV
export JUPYTER_PATH="$TMP/jupyter" IPYTHONDIR="$TMP/ipython" MPLCONFIGDIR="$TMP/mpl" \
  INCEPTION_LIB_SYSTEM_DATA="" INCEPTION_LIB_CACHE="$TMP/cache" INCEPTION_LIB_FASHION_MNIST_MIRROR="$MIRROR" \
  INCEPTION_LIB_PROGRESS=0 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 TF_ENABLE_ONEDNN_OPTS=0 \
  OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
echo "colab rehearsal: install from $INSTALL_FROM; Fashion-MNIST from $MIRROR (each chapter: an empty cache)"

"$MAIN_PY" "$ROOT/.ci/colab_rehearsal.py" --notebooks "$NOTEBOOKS" --work "$TMP/work" --venv "$VENV" \
  --install-from "$INSTALL_FROM" --kernel colab-rehearsal --timeout "${CELL_TIMEOUT:-900}" ${COMPARE[@]+"${COMPARE[@]}"} ${KEEP[@]+"${KEEP[@]}"} ${CHAPTERS[@]+"${CHAPTERS[@]}"}
