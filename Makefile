# One entry point for every task. Each target does its own set-up, so it works on a fresh machine.

CARGO ?= cargo
COOLSTORE ?= examples/coolstore/eventhost.toml

.PHONY: build plugins host test lint run run-kafka kafka-start kafka-stop clean

build: plugins host

plugins:
	bash plugins/build.sh

host:
	$(CARGO) build --bins

# Every test: unit, integration (embedded bus and a real Kafka broker), browser, and lints.
test:
	bash scripts/test

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	bash plugins/build.sh --lint

# The coolstore on the embedded bus at http://127.0.0.1:8080.
run: plugins
	$(CARGO) run --bin eventhost -- run $(COOLSTORE)

run-kafka: plugins kafka-start
	$(CARGO) run --bin eventhost -- run examples/coolstore/eventhost-kafka.toml

kafka-start:
	bash scripts/kafka start

kafka-stop:
	bash scripts/kafka stop

clean:
	$(CARGO) clean
	rm -rf plugins/target plugins/dist
