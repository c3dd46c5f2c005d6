# One entry point for every task. Each target does its own set-up, so it works on a fresh machine.

CARGO ?= cargo
COOLSTORE ?= examples/coolstore/eventhost.toml

.PHONY: build plugins rust-plugins shop-plugins host test lint bench soak run run-kafka run-cluster run-hello kafka-start kafka-stop clean

build: plugins host

plugins:
	bash plugins/build.sh

# Only the Rust plugins (the shop's and hello's), so the examples need no other toolchain.
rust-plugins:
	bash plugins/build.sh --rust

host:
	$(CARGO) build --bins

# Every test: unit, integration (embedded bus and a real Kafka broker), browser, and lints.
test:
	bash scripts/test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	bash plugins/build.sh --lint

SHOP_PLUGINS = catalog cart payment order

# Builds the Rust plugins and copies the shop's into examples/coolstore/plugins, where its
# configs load them from.
shop-plugins: rust-plugins
	bash scripts/stage-plugins examples/coolstore/plugins $(SHOP_PLUGINS)

# The coolstore on the embedded bus at http://127.0.0.1:8080.
run: shop-plugins
	$(CARGO) run --bin eventhost -- run $(COOLSTORE)

# The same shop on a real Kafka broker (started here, left running; stop it with make kafka-stop).
run-kafka: shop-plugins kafka-start
	$(CARGO) run --bin eventhost -- run examples/coolstore/eventhost-kafka.toml

# The same shop as a fleet: the broker, PostgreSQL and three hosts on ports 8081-8083 sharing
# the state (the broker and the database are left running). Ctrl-C stops the hosts.
run-cluster: shop-plugins
	bash scripts/run-cluster examples/coolstore/eventhost-cluster.toml

# The smallest example: one plugin, one route, at http://127.0.0.1:8080/hello/you.
run-hello: rust-plugins
	bash scripts/stage-plugins examples/hello/plugins hello
	$(CARGO) run --bin eventhost -- run examples/hello/eventhost.toml

# The sandbox's cost against native code, the host at twice its sustainable load against its
# unloaded self, its memory, cold start and hot swap of a plugin, the Kafka pipeline against a
# native rdkafka service on the same broker (started here, left running), then HTTP under wrk
# against the same handlers compiled natively; each measured in one run (release build). The
# pipeline's settings are env vars, listed in host/examples/pipeline/main.rs. The HTTP benchmark
# needs the host built with the `bench` feature (its native routes), so it runs last.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
bench: plugins kafka-start
	command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(CARGO) run --release --example overhead
	$(CARGO) build --release --bin eventhost --example pipeline --example overload --example footprint
	$(CARGO) run --release --example overload
	$(CARGO) run --release --example footprint
	$(CARGO) run --release --example pipeline
	$(CARGO) build --release --features bench --bin eventhost --example http
	$(CARGO) run --release --features bench --example http

# About 15 minutes, not in CI: the soak test longer, on the embedded bus and then on Kafka (the
# broker is started here and left running), each printing the host's RSS over time.
SOAK_SECONDS ?= 420
soak: plugins kafka-start
	EVENTHOST_SOAK_BUS=embedded EVENTHOST_SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --test soak -- --nocapture
	EVENTHOST_SOAK_BUS=kafka EVENTHOST_SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --test soak -- --nocapture

kafka-start:
	bash scripts/kafka start

kafka-stop:
	bash scripts/kafka stop

clean:
	$(CARGO) clean
	rm -rf plugins/target plugins/dist
