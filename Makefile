# fabperf — see README.md. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where `make lab`/`make up` run ENV: nspawn (the qemu images as containers, native speed)
# where systemd-nspawn is installed (`make deps` installs it), else qemu (full VMs);
# PROVIDER=qemu gives VMs anyway, PROVIDER=aws|openstack bakes and launches in a cloud.
PROVIDER ?= $(if $(shell command -v systemd-nspawn 2>/dev/null),nspawn,qemu)
# nspawn boots the qemu images; every other provider bakes its own
BAKE_PROVIDER = $(if $(filter nspawn,$(PROVIDER)),qemu,$(PROVIDER))
# a local spec (provider qemu) runs on nspawn through `launch up --provider nspawn`
UP_ARGS = $(if $(filter nspawn,$(PROVIDER)),--provider nspawn)
ENV ?= environments/local.yaml
# Extra arguments: e.g. BAKE_ARGS='--set monitor.GRAFANA_SOURCE=none --image caliper-worker'
BAKE_ARGS ?=
# e.g. BENCH_ARGS='--tps 10 --duration 30' (default: the spec's rounds)
BENCH_ARGS ?=
# Air-gapped inputs (machines without github.com / Grafana's apt repository):
#   FABRIC_SOURCE=PATH   a Fabric `git archive` tarball or checkout (else git at FABRIC_REF)
#   GOSS_BINARY=PATH     a goss binary for every bake's goss step (else the pinned release)
#   GRAFANA_SOURCE=none  bake the monitor without Grafana (else Grafana's apt repository)
FABRIC_SOURCE ?=
GOSS_BINARY ?=
GRAFANA_SOURCE ?=
export GOSS_BINARY
INPUT_ARGS := $(if $(FABRIC_SOURCE),--set fabric-node.FABRIC_SOURCE=$(abspath $(FABRIC_SOURCE))) \
	$(if $(GRAFANA_SOURCE),--set monitor.GRAFANA_SOURCE=$(GRAFANA_SOURCE))
# The host's locally added CAs (Debian: /usr/local/share/ca-certificates) are trusted inside
# the base image, so guests work behind the same TLS-intercepting proxy as the host.
# Empty on a machine without any; override with BASE_ARGS='--extra-ca FILE' or BASE_ARGS=.
BASE_ARGS ?= $(foreach c,$(wildcard /usr/local/share/ca-certificates/*.crt),--extra-ca $(c))

APT_PACKAGES := packer qemu-system-x86 qemu-utils cloud-image-utils debootstrap shellcheck \
	genisoimage xorriso openssl python3-venv python3-pip ca-certificates sudo \
	e2fsprogs fdisk dosfstools mtools grub-pc-bin openssh-client vde2 systemd-container \
	prometheus prometheus-pushgateway chromium
APT_NO_RECOMMENDS := cloud-init

.PHONY: help venv deps base-image bake-images lab up status bench down test test-chroot test-unit lint clean

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

base-image: venv ## the local Debian 12 base qcow2 for the qemu provider (root; cached)
	$(BIN)/bake base-image $(BASE_ARGS)

bake-images: venv $(if $(filter qemu,$(BAKE_PROVIDER)),base-image) ## bake fabric-node, caliper-worker and monitor on $(BAKE_PROVIDER)
	$(BIN)/bake build --provider $(BAKE_PROVIDER) $(INPUT_ARGS) $(BAKE_ARGS)

lab: bake-images ## the main job: bake what is missing, launch $(ENV) on $(PROVIDER), bootstrap Fabric, benchmark it
	@echo "make lab: launching $(ENV) on $(PROVIDER)$(if $(filter nspawn,$(PROVIDER)), (containers at native speed; PROVIDER=qemu for full VMs))"
	$(BIN)/launch up $(ENV) $(UP_ARGS)
	$(BIN)/launch status $(ENV)
	$(BIN)/launch bench $(ENV) $(BENCH_ARGS)

up: venv ## launch the environment $(ENV) on $(PROVIDER) from the baked images (bootstraps the channel)
	$(BIN)/launch up $(ENV) $(UP_ARGS)

status: venv ## hosts and every Fabric node's channel height of $(ENV)
	$(BIN)/launch status $(ENV)

bench: venv ## run the Caliper benchmark on $(ENV) (launched) and print the results table
	$(BIN)/launch bench $(ENV) $(BENCH_ARGS)

down: venv ## tear the environment $(ENV) down
	$(BIN)/launch down $(ENV)

test: venv ## the whole test suite: unit, integration, end to end (QEMU)
	$(BIN)/pytest tests -m "not chroot"

test-chroot: venv ## the image scripts in a debootstrap chroot (root; FABPERF_FABRIC_SRC=DIR adds fabric-node)
	$(BIN)/pytest tests -m chroot

test-unit: venv ## unit tests only (seconds, no subprocess)
	$(BIN)/pytest tests/unit

lint: venv ## ruff, the type checker (mypy: fabkit, bake, launch) and shellcheck
	$(BIN)/ruff check bake launch fabkit tests benchmarks
	$(BIN)/mypy
	find packer/scripts packer/files -name '*.sh' -print0 | xargs -0 -r shellcheck

clean: ## remove build outputs (not the venv)
	rm -rf build
