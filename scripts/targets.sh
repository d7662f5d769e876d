#!/usr/bin/env bash
# The deploy-target suites (`just targets`), one per target, each against real parts or a
# faithful fake:
#   self_hosted                tests/pilot.rs, tests/brokers.rs (a real nats-server: the pilot,
#                              JetStream domains, WebSocket endpoints)
#   kubernetes                 tests/targets_kubernetes.rs (fake API server validating every
#                              object against Kubernetes' OpenAPI schema)
#   digitalocean.app_platform  tests/targets_digitalocean.rs (fake App Platform API validating
#                              every body against DigitalOcean's OpenAPI; active apps backed by
#                              a real nats-server over WebSocket)
# One line per target, then `targets: <passed>/<total> (self_hosted, kubernetes,
# digitalocean.app_platform)`; the exit status is non-zero unless every test passed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

declare -A suites=(
    [self_hosted]="pilot brokers"
    [kubernetes]="targets_kubernetes"
    [digitalocean.app_platform]="targets_digitalocean"
)
order=(self_hosted kubernetes digitalocean.app_platform)

passed=0
total=0
lines=()
for t in "${order[@]}"; do
    args=()
    for s in ${suites[$t]}; do args+=(--test "$s"); done
    cargo test -p eventbus-tests --no-fail-fast "${args[@]}" 2>&1 | tee "$log/$t"
    # Count the test lines themselves, so a suite that fails to build counts as failed.
    p=$(grep -cE '^test .* \.\.\. ok$' "$log/$t")
    f=$(grep -cE '^test .* \.\.\. FAILED$' "$log/$t")
    declared=0
    for s in ${suites[$t]}; do
        declared=$((declared + $(grep -c '#\[test\]' "tests/$s.rs")))
    done
    n=$((p + f))
    [ "$n" -lt "$declared" ] && n=$declared
    passed=$((passed + p))
    total=$((total + n))
    lines+=("  $t: $p/$n passed (${suites[$t]})")
done
echo
printf '%s\n' "${lines[@]}"
echo "targets: $passed/$total (self_hosted, kubernetes, digitalocean.app_platform)"
[ "$passed" = "$total" ]
