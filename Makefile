# fabperf — see README.md. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROVIDER ?= qemu

APT_PACKAGES := packer qemu-system-x86 qemu-utils cloud-image-utils debootstrap shellcheck \
	genisoimage xorriso openssl python3-venv python3-pip ca-certificates sudo \
	e2fsprogs fdisk dosfstools mtools grub-pc-bin openssh-client
APT_NO_RECOMMENDS := cloud-init

.PHONY: help venv deps bake-images test test-unit lint clean

help: ## this list
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/bake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,aws,openstack]'
	@touch $@

venv: $(BIN)/bake ## Python virtualenv with fabperf and its test tools

deps: ## system packages (Debian 12; run as root)
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_NO_RECOMMENDS)

bake-images: venv ## bake fabric-node, caliper-worker and monitor on $(PROVIDER)
	$(BIN)/bake build --provider $(PROVIDER)

test: venv ## the whole test suite: unit, integration, end to end (QEMU)
	$(BIN)/pytest tests

test-unit: venv ## unit tests only (seconds, no subprocess)
	$(BIN)/pytest tests/unit

lint: venv ## ruff + shellcheck
	$(BIN)/ruff check bake launch tests benchmarks
	find packer/scripts packer/files -name '*.sh' -print0 | xargs -0 -r shellcheck

clean: ## remove build outputs (not the venv)
	rm -rf build
