#!/usr/bin/env bash
# Shows that a .wasm is a component (not a core module): its preamble's layer field is 1,
# and lists the interfaces it imports and exports, read from the binary itself.
set -euo pipefail
wasm="$1"
python3 - "$wasm" <<'PY'
import sys, re
b = open(sys.argv[1], "rb").read()
assert b[:4] == b"\0asm", "not a wasm binary"
version = int.from_bytes(b[4:6], "little"); layer = int.from_bytes(b[6:8], "little")
kind = "component" if layer == 1 else "core module"
print(f"{sys.argv[1]}: {len(b)} bytes, wasm {kind} (version {version:#x}, layer {layer})")
names = sorted(set(m.decode() for m in re.findall(rb"eventbus:iac/[a-z-]+@[0-9.]+", b)))
print("eventbus interfaces named in the binary:", ", ".join(names))
sys.exit(0 if layer == 1 else 1)
PY
