#!/usr/bin/env bash
# The real wfctl, end to end (`just wfctl-e2e [release|debug]`):
#   1. builds wfctl at the pinned release from the Go module proxy (scripts/wfctl.sh);
#   2. packages the plugin (scripts/package.sh, the same directory users install);
#   3. tests/wfctl_e2e.rs: wfctl plans, applies, updates, replaces and destroys the pilot on a
#      self-hosted nats-server and on the App Platform fake, and the Kafka pilot
#      (examples/bmw-kafka) on each pinned Kafka version, checked on the server itself;
#   4. wfctl's published conformance suite (tests/wfctl-conformance, a Go test module) against
#      the plugin loaded by wfctl's own external-plugin manager;
# then one line:
#   wfctl-e2e: wfctl <version>: pilot ok (self_hosted, digitalocean.app_platform, kafka); conformance <p> passed, <f> failed, <s> skipped
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
profile="${1:-release}"

wfctl="$(scripts/wfctl.sh)" || { echo "wfctl-e2e: cannot build wfctl"; exit 1; }
version="$("$wfctl" --version 2>&1 | head -1)"  # wfctl prints its version on stderr
SKIP_TARBALL=1 scripts/package.sh "$profile" >/dev/null || { echo "wfctl-e2e: packaging failed"; exit 1; }
package="$here/dist/workflow-plugin-eventbus"

echo "==> the pilot under wfctl $version" >&2
pilot=failed
if WFCTL="$wfctl" EVENTBUS_PLUGIN_PACKAGE="$package" \
  cargo test -p eventbus-tests --features wfctl-e2e --test wfctl_e2e -- --nocapture --test-threads 1; then
  pilot=ok
fi

echo "==> wfctl's conformance suite (iac/conformance)" >&2
plugins="$(mktemp -d "${TMPDIR:-/tmp}/eventbus-wfctl-conformance-XXXXXX")"
log="$plugins/go-test.json"
trap 'rm -rf "$plugins"' EXIT
cp -r "$package" "$plugins/"
(cd tests/wfctl-conformance && WFCTL_PLUGIN_DIR="$plugins" EVENTBUS_LOG=warn \
  go test -count=1 -json ./...) > "$log" 2>&1
# One verdict per scenario (the subtests of TestWfctlConformance).
counts="$(python3 - "$log" <<'PY'
import json, sys
verdicts = {}
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    t = e.get("Test", "")
    if "/" in t and e.get("Action") in ("pass", "fail", "skip"):
        verdicts[t] = e["Action"]
    if "/" in t and e.get("Action") == "output" and e.get("Output", "").strip():
        out = e["Output"].rstrip()
        if any(k in out for k in ("--- ", "skipped", "Error", "error", "expected")):
            print(f"  {out}", file=sys.stderr)
n = lambda a: sum(1 for v in verdicts.values() if v == a)
print(n("pass"), n("fail"), n("skip"))
PY
)"
read -r passed failed skipped <<< "${counts:-0 1 0}"
[ "$passed$failed$skipped" = "000" ] && { failed=1; tail -20 "$log" >&2; }

echo "wfctl-e2e: wfctl $version: pilot $pilot (self_hosted, digitalocean.app_platform, kafka); conformance $passed passed, $failed failed, $skipped skipped"
[ "$pilot" = ok ] && [ "$failed" = 0 ]
