# Every developer task. `./dev <recipe>` installs what is missing first.

set shell := ["bash", "-euo", "pipefail", "-c"]

export PATH := justfile_directory() + "/.venv/bin:" + env_var('PATH')

# List the recipes.
default:
    @just --list

# Build the component (wasm32-wasip2) and the host CLI.
build:
    cargo build -p eventbus-guest --target wasm32-wasip2 --release
    cargo build -p eventbus-host

# The main job: a local nats-server, then plan, apply and status of the pilot (examples/bmw).
demo: build
    scripts/demo.sh examples/bmw/infra.yaml

# The pilot on Kafka (examples/bmw-kafka): a local Apache Kafka (jars from Maven Central), then
# plan, apply, an empty second plan and status.
demo-kafka: build
    scripts/demo-kafka.sh examples/bmw-kafka/infra.yaml

# Every test: the guest's and host's unit tests, then the end-to-end suites against real servers
# (the sandbox proof among them, hence the hostile component).
test: build hostile
    cargo test --workspace --no-fail-fast

# Prove the .wasm is a real component (prints the component header and its world).
inspect: build
    scripts/inspect-component.sh target/wasm32-wasip2/release/eventbus_guest.wasm

# Lint as CI would.
lint:
    cargo fmt --all -- --check
    cargo clippy -p eventbus-host -p eventbus-tests --all-targets --features eventbus-tests/wfctl-e2e -- -D warnings
    cargo clippy -p eventbus-guest -p eventbus-hostile --target wasm32-wasip2 --release -- -D warnings

# The server-truth matrix: our plan (update or replace) against what each nats-server accepts.
fidelity: build
    cargo test -p eventbus-tests --test fidelity

# The Kafka server-truth matrix: for each topic field transition, our plan (update, replace or
# refused) against what Kafka 3.9 and 4.x accept in place, then apply and an empty second plan.
fidelity-kafka: build
    cargo test -p eventbus-tests --test fidelity_kafka

# The deploy-target suites (self_hosted on a real nats-server; kubernetes and App Platform
# against fakes that validate every request against the providers' published schemas), then
# `targets: <passed>/<total> (self_hosted, kubernetes, digitalocean.app_platform)`.
targets: build
    scripts/targets.sh

# Crash safety: SIGKILL the apply (and destroy) at random instants, rerun, check nothing is lost.
chaos: build
    CHAOS_KILLS=64 cargo test -p eventbus-tests --test chaos

# The wfctl plugin: dist/workflow-plugin-eventbus/ (binary, plugin.json, component), a tarball
# and its sha256. `just package debug` packages the debug build.
package profile="release":
    scripts/package.sh {{profile}}

# Distribution by digest: push the component as an OCI artifact (wasm-pkg-tools' layout: an
# application/vnd.wasm.config.v0+json config, one application/wasm layer) to REGISTRY/REPO, and
# print `oci://REGISTRY/REPO@sha256:<manifest digest>` for `eventbus --component`. Plain HTTP
# only for a loopback registry (e.g. `docker-registry serve` on 127.0.0.1:5000).
publish registry=env_var_or_default("REGISTRY", "127.0.0.1:5000") repo=env_var_or_default("REPO", "eventbus/iac"): build
    target/debug/eventbus --component target/wasm32-wasip2/release/eventbus_guest.wasm publish "oci://{{registry}}/{{repo}}"

# wfctl's conformance scenarios, through the plugin bridge against a real nats-server.
wfctl-conformance: build
    #!/usr/bin/env bash
    set -uo pipefail
    scenarios=(CrossResourceConstraintRejection DeleteActionInApplyInvokesDriverDelete DiffSurvivesGRPCRoundTrip
      InfraOutputCrossModuleResolution NeedsReplaceTriggersReplaceAction OutputsConsistencyAcrossReadCycles
      OutputsRefreshDetectsNewFields PlanStaleDiagnostic ProtectedReplaceWithOverride ProtectedReplaceWithoutOverride
      ReplaceCascadePreservesDependents UpsertOnAlreadyExists)
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    cargo test -p eventbus-tests --test bridge -- conformance:: 2>&1 | tee "$log"
    passed=0
    for s in "${scenarios[@]}"; do
      if grep -qE "^test conformance::$s \.\.\. ok$" "$log"; then passed=$((passed + 1)); else echo "not passed: $s"; fi
    done
    echo "conformance: $passed/${#scenarios[@]} scenarios passed"
    [ "$passed" = "${#scenarios[@]}" ]

# The real wfctl, built from the Go module proxy at the pinned release (scripts/wfctl.sh),
# drives the packaged plugin: the pilot planned, applied, updated, replaced and destroyed on a
# self-hosted nats-server and on the App Platform fake, checked on the server; then wfctl's own
# conformance suite. Ends with `wfctl-e2e: wfctl <version>: pilot ok (...); conformance ...`.
wfctl-e2e profile="release": build
    scripts/wfctl-e2e.sh {{profile}}

# Real Apache Kafka servers (KRaft; the versions in scripts/kafka-versions, jars fetched by
# scripts/kafka.sh) started by the tests, checked by confluent-kafka: single nodes, SASL, a
# three-node cluster; prints each start's time.
kafka-servers:
    scripts/kafka.sh >/dev/null
    cargo test -p eventbus-tests --test kafka_servers -- --nocapture

# Whatever finished test runs left behind (processes, temp dirs); exit 1 if anything.
leftovers:
    scripts/leftovers.sh

# The hostile component the sandbox proof runs (tests/hostile, wasm32-wasip2).
hostile:
    cargo build -p eventbus-hostile --target wasm32-wasip2 --release

# The sandbox proof: a hostile component attacks the host in every way it can; one line per
# attack, then `sandbox: N attacks, M contained, E escapes`. `just sandbox NATS` runs a subset.
sandbox *filter: hostile
    cargo test -p eventbus-tests --test sandbox -- {{filter}}

# Kinesis (issue 13): the cloud capability's AWS accounts (SigV4, the credential chain,
# operation grants) against kinesis-mock and moto's server verifying signatures, checked with
# boto3; then the Kinesis bus end to end through the CLI (tests/kinesis_pilot.rs: the pilot of
# examples/bmw-kinesis applied, re-planned empty, changed, resharded in steps, guarded and
# destroyed on kinesis-mock, and on moto with verified signatures and a wrong secret).
# Ends with `kinesis: <passed>/<total> (kinesis-mock, moto-sigv4)`.
kinesis: build hostile
    #!/usr/bin/env bash
    set -uo pipefail
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    cargo test -p eventbus-tests --test kinesis_cap 2>&1 | tee "$log"
    cargo test -p eventbus-tests --test kinesis_pilot 2>&1 | tee -a "$log"
    passed=$(grep -cE '^(test|kinesis case) .* \.\.\. ok$' "$log")
    total=$(grep -cE '^(test|kinesis case) .* \.\.\. (ok|FAILED|ignored)$' "$log")
    echo "kinesis: $passed/$total (kinesis-mock, moto-sigv4)"
    [ "$total" -gt 0 ] && [ "$passed" = "$total" ]

# The same component under three hosts: the Rust CLI, the Python host (hosts/python, wasmtime-py)
# and the Node host (hosts/js, jco with JSPI). Every example that plans without a server is
# planned identically (canonical JSON), each applies the pilot to its own nats-server (checked by
# an independent client) and re-plans empty, and the hostile component's NATS attacks are
# contained under each. Ends with `polyglot: rust, python, js: <n> configs planned identically,
# pilot applied by each, <a>/<t> sandbox attacks contained per host`.
polyglot: build hostile
    cargo test -p eventbus-tests --test polyglot

# Benchmarks, on what users run: the release CLI and component (what `just package` ships),
# the benchmark itself built --release (its native diff links the guest crate at the
# component's opt-level). Apply, no-op plan, start-up, boundary and memory beside native
# async-nats baselines, and side by side with OpenTofu + terraform-provider-jetstream
# (scripts/tofu.sh; left out if they cannot be built), on a local nats-server. Prints a table
# and ends with a `bench:` line (see BENCHMARKS.md).
bench: (_bench "1")

# The same, small (the pilot and N=5, few calls): every measurement runs, none means much.
# (Plain `cargo test`, so CI, runs the small version on the debug build.)
bench-smoke: (_bench "0")

_bench full:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -p eventbus-guest --target wasm32-wasip2 --release
    cargo build -p eventbus-host --release
    if out="$(scripts/tofu.sh)"; then
      export BENCH_TOFU="$(sed -n 1p <<<"$out")" BENCH_TOFU_PROVIDER="$(sed -n 2p <<<"$out")"
    else
      echo "bench: no OpenTofu or terraform-provider-jetstream (scripts/tofu.sh above says why): the side-by-side is left out" >&2
      export BENCH_TOFU=0
    fi
    EVENTBUS_BIN="$PWD/target/release/eventbus" BENCH_FULL={{full}} \
      cargo test --release -p eventbus-tests --features bench-native --test bench

# Each target runs `secs` seconds on a copy of guest/fuzz/corpus/<target> (libFuzzer on stable,
# no cargo-fuzz), then `fuzz: <targets> targets, <runs> runs, <crashes> crashes`. CI: `just fuzz 10`.
# Fuzzing: the guest's config parsing and planning, JetStream API replies and durations, natively.
fuzz secs="30" *targets:
    scripts/fuzz.sh {{secs}} {{targets}}
