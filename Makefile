# consenso: the two commands of the README, plus helpers.
#   make demo   runs the 3-node cluster example on Raft, Multi-Paxos and ZAB,
#               a bank state machine under the simulator (and a planted bug
#               in it, caught with its replay line), the C examples (load
#               balancer; three nodes in one process per protocol; three
#               node processes over UDP that lose their leader's process),
#               and the Python examples (leader election on each protocol,
#               the Raft class, three node processes over UDP)
#   make test   formatting, lints, every Rust test (simulator seed range
#               included), the C API under ASan/UBSan (debug and release
#               library) and valgrind, the header as C++ and C99, make
#               install into an empty folder (soname, exported symbols, a
#               program built with pkg-config alone), the UDP example, and
#               the Python package: pip install ./python into .venv
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
# make install: where, and the version the library and consenso.pc carry.
PREFIX ?= /usr/local
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# The soname's version (as ffi/build.rs gives it): MAJOR from 1.0 on,
# 0.MINOR before (each 0.x minor release may break the ABI).
MAJOR := $(firstword $(subst ., ,$(VERSION)))
MINOR := $(word 2,$(subst ., ,$(VERSION)))
ABI := $(if $(filter 0,$(MAJOR)),0.$(MINOR),$(MAJOR))

.PHONY: demo test test-release-edges lint fmt bench bench-instructions bench-python sim-long header ffi ffi-release c-test c-valgrind c-example install install-test python-install python-test

demo: c-example
	$(CARGO) run --release --example cluster -- --protocol raft
	$(CARGO) run --release --example cluster -- --protocol paxos
	$(CARGO) run --release --example cluster -- --protocol zab
	$(CARGO) run --release --example bank
	$(CARGO) run --release --example bank -- --plant-bug
	$(C_OUT)/load_balancer
	$(C_OUT)/raft_cluster --protocol raft
	$(C_OUT)/raft_cluster --protocol paxos
	$(C_OUT)/raft_cluster --protocol zab
	examples/c/udp_cluster.sh $(C_OUT)/udp_node raft
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
	$(MAKE) c-valgrind
	$(MAKE) install-test
	$(MAKE) c-example
	examples/c/udp_cluster.sh $(C_OUT)/udp_node zab > /dev/null
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
	$(CC) -std=c11 $(C_WARN) $(C_SAN) -Iinclude examples/c/raft_cluster.c $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/raft_cluster_san
	$(C_OUT)/raft_cluster_san --protocol paxos > /dev/null

# The C tests again, sanitized, against the release library; then the node
# test unsanitized under valgrind against the debug library: no memory
# error and no leak (definite or indirect) may show. (Against the release
# library valgrind flags a copy of an enum whose padding is uninitialised,
# in safe code LLVM optimised: a false positive memcheck is known for.)
c-valgrind: ffi ffi-release
	mkdir -p $(C_OUT)
	$(CC) -std=c11 $(C_WARN) $(C_SAN) -Iinclude tests/c/balancer_test.c target/release/libconsenso.a $(C_LIBS) -o $(C_OUT)/balancer_test_release
	$(C_OUT)/balancer_test_release > /dev/null
	$(CC) -std=c11 $(C_WARN) $(C_SAN) -Iinclude tests/c/node_test.c target/release/libconsenso.a $(C_LIBS) -o $(C_OUT)/node_test_release
	$(C_OUT)/node_test_release > /dev/null
	$(CC) -std=c11 $(C_WARN) -g -Iinclude tests/c/node_test.c $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/node_test_plain
	valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect $(C_OUT)/node_test_plain

c-example: ffi
	mkdir -p $(C_OUT)
	$(CC) -std=c11 $(C_WARN) -O2 -Iinclude examples/c/load_balancer.c $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/load_balancer
	$(CC) -std=c11 $(C_WARN) -O2 -Iinclude examples/c/raft_cluster.c $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/raft_cluster
	$(CC) -std=c11 $(C_WARN) -O2 -Iinclude examples/c/udp_node.c $(FFI_LIB) $(C_LIBS) -o $(C_OUT)/udp_node

ffi-release:
	$(CARGO) build --release -p consenso-ffi

# Installs libconsenso.so.VERSION (soname libconsenso.so.ABI, with the
# .so.ABI and .so links), libconsenso.a, consenso.h and consenso.pc under
# PREFIX (DESTDIR for staging). Then: cc prog.c $$(pkg-config --cflags --libs consenso)
install: ffi-release
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 include/consenso.h $(DESTDIR)$(PREFIX)/include/consenso.h
	install -m 755 target/release/libconsenso.so $(DESTDIR)$(PREFIX)/lib/libconsenso.so.$(VERSION)
	ln -sf libconsenso.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libconsenso.so.$(ABI)
	ln -sf libconsenso.so.$(ABI) $(DESTDIR)$(PREFIX)/lib/libconsenso.so
	install -m 644 target/release/libconsenso.a $(DESTDIR)$(PREFIX)/lib/libconsenso.a
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' ffi/consenso.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/consenso.pc

# make install into an empty folder; the soname, the exported symbols, and
# examples/c/raft_cluster.c built with the pkg-config line alone.
install-test:
	tests/c/install_test.sh

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
