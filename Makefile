# Bóveda: thin wrapper over scripts/. Two commands for a new user:
#   make demo   install what is missing, build, start a demo server in the foreground
#   make test   install what is missing, build, run every test (unit, API, ASan, fuzz)
.DEFAULT_GOAL := help
SHELL := /bin/bash

.PHONY: help deps build demo test bench clean format

help:
	@echo "make demo   - install dependencies, build, run a demo server (HTTP :8080, HTTPS :8443)"
	@echo "make test   - install dependencies, build, run unit + API tests, ASan/UBSan build, fuzzing"
	@echo "make build  - build build/boveda (RelWithDebInfo)"
	@echo "make bench  - benchmarks (HTTP vs nginx, group commit); not part of make test"
	@echo "make format - clang-format the C sources"
	@echo "make clean  - remove build directories (keeps demo-data/)"

deps:
	bash scripts/install-deps

build:
	bash scripts/build build -DCMAKE_BUILD_TYPE=RelWithDebInfo

demo:
	bash scripts/demo

test:
	bash scripts/test

bench:
	bash bench/run

format:
	find src tests/unit bench fuzz -name '*.[ch]' -print0 | xargs -0 -r clang-format -i

clean:
	rm -rf build build-asan build-fuzz build-bench build-logs
