# The README's two commands. Everything else is CMake.
#   make demo        install missing Debian packages, build, run `nines demo` (a game day
#                    on a lab of this machine, as root; `nines demo store`: one ninesd)
#   make test        install, build, run every test with prove (TAP)
#   make test SAN=1  the same with AddressSanitizer + UBSan (build-san/)
#   make fuzz        build every libFuzzer target (build-fuzz/), see docs/fuzzing.md

SAN ?= 0
JOBS ?= $(shell nproc)
ifeq ($(SAN),1)
BUILD := build-san
CMAKE_FLAGS := -DNINES_SAN=ON
else
BUILD := build
CMAKE_FLAGS :=
endif
PROVE_FLAGS ?= -r

# Every fuzz/*.c is a libFuzzer target of the same name.
FUZZERS := $(basename $(notdir $(wildcard fuzz/*.c)))

.PHONY: all deps build demo test fuzz clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

demo: build
	@./$(BUILD)/bin/nines demo --playbook playbooks/demo.yaml

# sync first: the build's writeback (hundreds of MB of objects on a fresh
# machine) must not stall the first tests' fsyncs (seen once: a canary
# probe timing out on a node whose WAL waited behind it).
test: build
	@sync
	NINES_BUILD=$(CURDIR)/$(BUILD) prove $(PROVE_FLAGS) t/

fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DNINES_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target $(FUZZERS) -- --no-print-directory

clean:
	rm -rf build build-san build-fuzz
