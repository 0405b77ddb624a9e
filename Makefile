# Everything a fresh clone needs: `make test` builds .venv from pyproject.toml by itself.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: image test-deploy test test-shuffled lint typecheck pytest install demo bench-enqueue bench-claim bench-route bench-intake bench-retention bench-throughput bench-soak bench-slow-receiver bench-mapping-languages bench-consumers clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# The same in a random order (pytest-random-order; the seed is printed, rerun with --random-order-seed=N).
test-shuffled: lint typecheck $(STAMP)
	$(BIN)/pytest --random-order

demo: $(STAMP)
	$(BIN)/outbox demo

bench-enqueue: $(STAMP)
	$(BIN)/python bench/enqueue.py

bench-claim: $(STAMP)
	$(BIN)/python bench/claim.py

bench-route: $(STAMP)
	$(BIN)/python bench/route.py

bench-intake: $(STAMP)
	$(BIN)/python bench/intake.py

bench-retention: $(STAMP)
	$(BIN)/python bench/retention.py

bench-throughput: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/throughput.py

# An hour by default; e.g. `make bench-soak SOAK_ARGS="--minutes 10 --rate 300"` or SOAK_ARGS=--find-rate.
SOAK_ARGS ?=
bench-soak: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

bench-slow-receiver: $(STAMP)
	$(BIN)/python bench/slow_receiver.py

bench-mapping-languages: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/mapping_languages.py

# POST /hooks/{endpoint} (issue 22), e.g. `make bench-consumers CONSUMERS_ARGS=--quick`.
bench-consumers: $(STAMP)
	$(BIN)/python bench/consumers.py $(CONSUMERS_ARGS)

# The OCI image nlgov-outbox:VERSION, with podman or docker (whichever answers). IMAGE_BUILD_ARGS passes more,
# e.g. IMAGE_BUILD_ARGS="--build-arg BASE=localhost/pybase --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt".
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
ENGINE  ?= $(shell if podman info >/dev/null 2>&1; then echo podman; elif docker info >/dev/null 2>&1; then echo docker; fi)
IMAGE_BUILD_ARGS ?=
image:
	@test -n "$(ENGINE)" || { echo "make image: no container engine answers (install podman, or start docker)"; exit 1; }
	$(ENGINE) build $(IMAGE_BUILD_ARGS) --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) -t nlgov-outbox:$(VERSION) .

# The image, compose, Kubernetes (podman kube play) and systemd, for real (tests/deploy/). Needs podman or docker;
# on a machine without systemd, deploy/test/containers.conf is podman's configuration (CONTAINERS_CONF=... to change).
CONTAINERS_CONF ?= $(CURDIR)/deploy/test/containers.conf
test-deploy: $(STAMP)
	@if podman info >/dev/null 2>&1 || CONTAINERS_CONF=$(CONTAINERS_CONF) podman info >/dev/null 2>&1 || docker info >/dev/null 2>&1; then :; \
	  else echo "make test-deploy: no container engine answers (install podman, or start docker)"; exit 1; fi
	CONTAINERS_CONF=$(CONTAINERS_CONF) $(BIN)/pytest -m deploy tests/deploy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
