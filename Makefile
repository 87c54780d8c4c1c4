# The two commands of the README:
#   make book   set everything up, then build the HTML book into _build/html
#   make test   set everything up, then run every test (library + strict nbval of every chapter)
# Everything is installed into .venv from pinned versions (pyproject.toml extras; environment.yml mirrors them).

PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
FMNIST  := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system book test test-lib test-book lint clean

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

book: setup
	$(BIN)/jupyter-book build . -W --keep-going

test: setup
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --nbval book/ --nbval-sanitize-with book/nbval_sanitize.cfg -p no:cacheprovider

lint: setup
	$(BIN)/ruff check inception_lib tests

clean:
	rm -rf _build .pytest_cache
