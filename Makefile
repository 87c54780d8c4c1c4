# The two commands of the README:
#   make book   set everything up, then build the HTML book into _build/html (it reads offline: MathJax included)
#   make test   set everything up, then run every test (library + strict nbval of every chapter, twice:
#               as this machine and as another CPU would run it)
# Everything is installed into .venv from pinned versions (pyproject.toml extras; environment.yml mirrors them).

PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
FMNIST  := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system book outputs test test-lib test-book test-book-other-cpu colab-rehearsal lint clean

# The chapters a second time as another machine would run them: CPU kernels restricted to AVX2 (ATen, oneDNN, MKL),
# TensorFlow's oneDNN kernels off, one thread. The stored outputs must re-create under both settings.
OTHER_CPU := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 TF_ENABLE_ONEDNN_OPTS=0 \
             OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1

setup: system $(VENV)/.installed

# Debian packages: the offline Fashion-MNIST files and Chromium (for the rendered-book test).
system:
	@if [ ! -f $(FMNIST) ] || ! command -v chromium >/dev/null; then \
	  echo "installing dataset-fashion-mnist and chromium (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist chromium >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[torch,keras,book,test]"
	touch $@

# The book serves its own MathJax (no CDN): fetched once and checked against its pinned sha512.
book: setup
	$(BIN)/python scripts/fetch_mathjax.py
	$(BIN)/jupyter-book build . -W --keep-going

test: test-lib test-book test-book-other-cpu

test-lib: setup
	$(BIN)/python -m pytest tests --durations=15

test-book: setup
	$(BIN)/python -m pytest --nbval book/

test-book-other-cpu: setup
	$(OTHER_CPU) $(BIN)/python -m pytest --nbval book/

# Re-execute every chapter and store its outputs (then commit them; nbval compares against them).
outputs: setup
	$(BIN)/python scripts/store_outputs.py

# Chapters run as on Colab: a fresh venv with Colab's kind of packages, the install cell pointed at this checkout.
colab-rehearsal: setup
	bash .ci/colab_rehearsal.sh $(COLAB_REHEARSAL_ARGS)

lint: setup
	$(BIN)/ruff check inception_lib tests

clean:
	rm -rf _build .pytest_cache
