# consenso: the two commands of the README, plus helpers.
#   make demo   runs the 3-node cluster example on Raft, Multi-Paxos and ZAB,
#               a bank state machine under the simulator (and a planted bug
#               in it, caught with its replay line), the C load-balancer
#               example, and the Python examples (leader election on each
#               protocol, the Raft class, three node processes over UDP
#               that lose their leader's process)
#   make test   formatting, lints, every Rust test (simulator seed range
#               included), the C API under ASan/UBSan, the header as C++,
#               and the Python package: pip install ./python into .venv
#               (a virtual environment of the repository's own, so no
#               system-wide install is needed), then pytest

CARGO ?= cargo
PYTHON ?= python3
CC ?= gcc
CXX ?= g++

# C programs link the static library; the sanitizers catch memory and
# undefined-behaviour errors on the C side of every call.
C_WARN := -Wall -Wextra -Wpedantic -Werror
C_SAN := -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
C_LIBS := -lpthread -ldl -lm
C_OUT := target/c
FFI_LIB := target/debug/libconsenso.a
# The Python package is installed into a virtual environment of the
# repository's own (ignored by git).
VENV := .venv
VENV_PY := $(VENV)/bin/python

.PHONY: demo test test-release-edges lint fmt bench bench-instructions bench-python sim-long header ffi c-test c-example python-install python-test

demo: c-example
	$(CARGO) run --release --example cluster -- --protocol raft
	$(CARGO) run --release --example cluster -- --protocol paxos
	$(CARGO) run --release --example cluster -- --protocol zab
	$(CARGO) run --release --example bank
	$(CARGO) run --release --example bank -- --plant-bug
	$(C_OUT)/load_balancer
	$(MAKE) python-install
	$(VENV_PY) examples/python/leader_election.py raft
	$(VENV_PY) examples/python/leader_election.py zab
	$(VENV_PY) examples/python/leader_election.py paxos
	$(VENV_PY) examples/python/raft.py
	$(VENV_PY) examples/python/udp_cluster.py raft

test: lint
	$(CARGO) test --workspace
	$(MAKE) test-release-edges
	$(CARGO) check -p consenso-python
	$(MAKE) c-test
	$(CARGO) build --release --example cluster --example bank --bench throughput --bench compaction --bench hashing --bench balance --bench hash_compare
	$(MAKE) python-test

# The balancer's and hashing's tests again in release (no overflow checks):
# an arithmetic wrap there shows as a wrong answer, not a panic.
test-release-edges:
	$(CARGO) test --release -p consenso --lib -- balance:: hashing::

# Installs the package the way users do (pip builds it with maturin), with
# pytest and mypy from its test extra, into .venv; python-test then runs
# tests/python, checks the stubs against the module (stubtest) and the
# examples with mypy --strict, and runs the examples.
$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

python-install: $(VENV_PY)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check "./python[test]"

python-test: python-install
	$(VENV_PY) -m pytest -q tests/python
	$(VENV_PY) -m mypy.stubtest consenso
	$(VENV_PY) -m mypy --strict examples/python
	$(VENV_PY) examples/python/load_balancer.py > /dev/null
	$(VENV_PY) examples/python/leader_election.py zab > /dev/null
	$(VENV_PY) examples/python/raft.py > /dev/null
	$(VENV_PY) examples/python/udp_cluster.py paxos > /dev/null

ffi:
	$(CARGO) build -p consenso-ffi

# The C API from C (sanitized), the C example, and the header as C++ and
# as C99.
c-test: ffi
	mkdir -p $(C_OUT)
	$(CC) -std=c11 $(C_WARN) $(C_SAN) -Iinclude tests/c/balancer_test.c $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/balancer_test
	$(C_OUT)/balancer_test
	$(CC) -std=c11 $(C_WARN) $(C_SAN) -Iinclude tests/c/node_test.c $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/node_test
	$(C_OUT)/node_test
	$(CC) -std=c11 $(C_WARN) $(C_SAN) -Iinclude examples/c/load_balancer.c $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/load_balancer
	$(C_OUT)/load_balancer > /dev/null
	$(CXX) -std=c++17 $(C_WARN) $(C_SAN) -Iinclude tests/c/header_compiles_as_cpp.cpp $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/header_cpp
	$(C_OUT)/header_cpp
	$(CC) -std=c99 -pedantic $(C_WARN) -fsyntax-only -x c include/consenso.h

c-example: ffi
	mkdir -p $(C_OUT)
	$(CC) -std=c11 $(C_WARN) -O2 -Iinclude examples/c/load_balancer.c $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/load_balancer

# Regenerates include/consenso.h from ffi/src (the header_is_current test
# fails until the new header is committed).
header:
	CONSENSO_BLESS=1 $(CARGO) test -p consenso-ffi header_is_current

# The docs build without a warning (broken links included). The ffi crate's
# library is also named consenso, so the two are documented one at a time.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --no-deps -p consenso-ffi
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --no-deps -p consenso-python
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --no-deps -p consenso

fmt:
	$(CARGO) fmt --all

# The cluster throughput benchmark (see BENCHMARKS.md).
bench:
	$(CARGO) bench -p consenso --bench throughput
	$(CARGO) bench -p consenso --bench hashing
	$(CARGO) bench -p consenso --bench balance
	$(CARGO) bench -p consenso --bench hash_compare

# lb.pick() from Python against an empty Python method, and a 2,000-node
# consistent-hashing LoadBalancer against a HashRing (after python-test).
# Instructions per pick and per select (callgrind counts instructions, so
# the figures repeat exactly on a busy machine), for each policy with equal
# and unequal weights.
PICK_POLICIES := random round_robin weighted_round_robin least_connections least_response_time ring maglev_bounded
bench-instructions:
	$(CARGO) build --release -p consenso --bench pick_instructions
	@bin=$$(ls -t target/release/deps/pick_instructions-* | grep -v '\.d$$' | head -1); \
	echo "| policy | weights | pick | select |"; echo "|---|---|---:|---:|"; \
	for w in equal unequal; do for p in $(PICK_POLICIES); do \
	  valgrind --tool=callgrind --callgrind-out-file=target/callgrind.out $$bin $$p $$w > /dev/null 2>&1; \
	  pick=$$(callgrind_annotate --inclusive=yes --threshold=100 target/callgrind.out | awk '/run_picks/ {gsub(",","",$$1); print int($$1/10000); exit}'); \
	  sel=$$(callgrind_annotate --inclusive=yes --threshold=100 target/callgrind.out | awk '/run_selects/ {gsub(",","",$$1); print int($$1/10000); exit}'); \
	  echo "| $$p | $$w | $$pick | $$sel |"; \
	done; done

bench-python: python-install
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check "./python[bench]"
	$(VENV_PY) python/benches/bench_pick.py
	$(VENV_PY) python/benches/bench_build.py
	$(VENV_PY) python/benches/bench_node.py
	$(VENV_PY) python/benches/bench_vs_pysyncobj.py

# A longer simulator run: 100,000 seeds per protocol (about 3 minutes each).
sim-long:
	CONSENSO_SIM_SEEDS=100000 $(CARGO) test --release -p consenso --test simulation seed_range -- --nocapture
