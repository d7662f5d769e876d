#!/usr/bin/env bash
# Fails when finished test runs left something behind; run it after any suite (`./dev test`,
# `just sandbox`, ...). Prints one line per leftover, then
# `leftovers: <P> processes, <D> temp dirs`; exits 1 unless both are 0.
#
# Leftover processes:
#   * a process carrying EVENTBUS_TEST_RUN=<pid>-<hex> (tests/src/reaper.rs marks every
#     process the tests start; their children inherit it), or a guardian
#     (tests/src/reaper.py <id>), whose test process <pid> is no longer running;
#   * any other process of ours (a program from .venv or target/*/eventbus, a script under
#     tests/, or a command line naming one of our temp dirs) left to init: its parent is pid 1,
#     or a leftover of ours itself.
# Leftover temp dirs: eventbus-test-<pid>-<hex> (a run's root) once test process <pid> is
# gone; eventbus-e2e-*, do-fake-* and plugin-eventbus-* (left by runs before the reaper) always.
#
# Guardians of runs that just ended get up to LEFTOVERS_WAIT seconds (default 30) to finish.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# Resolved, as /proc/PID/exe is (either may be a link).
resolved() { (cd "$1" 2>/dev/null && pwd -P) || echo "$1"; }
target="$(resolved "${CARGO_TARGET_DIR:-$root/target}")"
venv="$(resolved "$root/.venv")"
tmp="${TMPDIR:-/tmp}"
tmp="${tmp%/}"
prefixes=(eventbus-test- eventbus-e2e- do-fake- plugin-eventbus-)
wait_secs="${LEFTOVERS_WAIT:-30}"

# "STATE PPID" of a process (fails when it is gone).
state_ppid() {
  local line rest
  read -r line 2>/dev/null <"/proc/$1/stat" || return 1
  rest="${line##*) }"
  echo "${rest%% *} $(cut -d' ' -f2 <<<"$rest")"
}

exe_of() { readlink "/proc/$1/exe" 2>/dev/null || true; }

# A run is going on while its test binary (target/*/deps/*) runs.
run_alive() {
  local pid="${1%%-*}"
  [[ "$pid" =~ ^[0-9]+$ ]] && [[ "$(exe_of "$pid")" == "$target"/*/deps/* ]]
}

# The run id of a marked process or of a guardian, if it has one.
run_of() {
  local var args
  while IFS= read -r -d '' var; do
    [[ "$var" == EVENTBUS_TEST_RUN=* ]] && { echo "${var#*=}"; return 0; }
  done 2>/dev/null <"/proc/$1/environ" || true
  mapfile -d '' args 2>/dev/null <"/proc/$1/cmdline" || return 1
  [[ "${args[1]:-}" == */tests/src/reaper.py ]] && echo "${args[2]:-}"
  return 0
}

# Ours without a run id: a program of the project's or a command line naming our temp dirs.
ours() {
  local exe args prefix
  exe="$(exe_of "$1")"
  if [[ -n "$exe" && ("$exe" == "$root"/* || "$exe" == "$target"/* || "$exe" == "$venv"/*) &&
    "$exe" != "$target"/*/deps/* && "$exe" != "$target"/*/build/* ]]; then
    return 0
  fi
  mapfile -d '' args 2>/dev/null <"/proc/$1/cmdline" || return 1
  [[ "${args[1]:-}" == "$root"/tests/* ]] && return 0
  for prefix in "${prefixes[@]}"; do
    [[ " ${args[*]} " == *"$tmp/$prefix"* ]] && return 0
  done
  return 1
}

# Ours, with init (pid 1) at the top of its chain of ours: nobody is looking after it.
orphaned() {
  local p="$1" s
  while s="$(state_ppid "$p")"; do
    p="${s#* }"
    [ "$p" = 1 ] && return 0
    ours "$p" || return 1
  done
  return 0
}

leftover() {
  local id
  id="$(run_of "$1")" || return 1
  if [ -n "$id" ]; then
    ! run_alive "$id"
  else
    ours "$1" && orphaned "$1"
  fi
}

# "PID PPID COMMAND" of every leftover process (not this script's own).
leftover_processes() {
  local dir pid s
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    [ "$pid" = $$ ] && continue
    s="$(state_ppid "$pid")" || continue
    [ "${s% *}" = Z ] && continue
    [ "${s#* }" = $$ ] && continue
    leftover "$pid" || continue
    echo "$pid ${s#* } $(tr '\0' ' ' 2>/dev/null <"$dir/cmdline")"
  done
}

leftover_dirs() {
  local prefix path name
  for prefix in "${prefixes[@]}"; do
    for path in "$tmp/$prefix"*; do
      [ -e "$path" ] || continue
      name="${path##*/}"
      [[ "$name" == eventbus-test-* ]] && run_alive "${name#eventbus-test-}" && continue
      echo "$path"
    done
  done
}

# Guardians still stopping their run: give them time.
for ((i = 0; i < wait_secs * 10; i++)); do
  leftover_processes | grep -q '/tests/src/reaper\.py ' || break
  sleep 0.1
done

processes="$(leftover_processes)"
dirs="$(leftover_dirs)"
[ -n "$processes" ] && sed 's/^/leftover process: /' <<<"$processes"
[ -n "$dirs" ] && sed 's/^/leftover temp dir: /' <<<"$dirs"
np=$(grep -c . <<<"$processes" || true)
nd=$(grep -c . <<<"$dirs" || true)
echo "leftovers: $np processes, $nd temp dirs"
[ "$np" = 0 ] && [ "$nd" = 0 ]
