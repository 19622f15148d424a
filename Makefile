# consenso: the two commands of the README, plus helpers.
#   make demo   runs the 3-node cluster example on Raft, Multi-Paxos and ZAB
#   make test   formatting, lints, every Rust test (simulator seed range included)

CARGO ?= cargo

.PHONY: demo test lint fmt bench sim-long python-check

demo:
	$(CARGO) run --release --example cluster -- --protocol raft
	$(CARGO) run --release --example cluster -- --protocol paxos
	$(CARGO) run --release --example cluster -- --protocol zab

test: lint
	$(CARGO) test --workspace
	$(CARGO) check -p consenso-python
	$(CARGO) build --release --example cluster --bench throughput --bench hashing --bench balance --bench hash_compare

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The cluster throughput benchmark (see BENCHMARKS.md).
bench:
	$(CARGO) bench -p consenso --bench throughput
	$(CARGO) bench -p consenso --bench hashing
	$(CARGO) bench -p consenso --bench balance
	$(CARGO) bench -p consenso --bench hash_compare

# A longer simulator run: 5,000 seeds per protocol.
sim-long:
	CONSENSO_SIM_SEEDS=5000 $(CARGO) test --release -p consenso --test simulation seed_range -- --nocapture
