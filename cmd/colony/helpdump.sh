#!/bin/bash
# helpdump.sh BINARY OUT writes what colony's command line shows a user to
# OUT: `--help` of every command and subcommand (found by walking "Available
# Commands"), the errors and exit codes of a few bad command lines and of
# an unreachable coordinator (127.0.0.1:1), the bash completion script's hash
# and some completions (with no coordinator to ask). A change that must not change the CLI (a refactor)
# leaves the dumps of binaries built before and after it identical:
#
#   go build -o /tmp/colony-old ./cmd/colony    # before the change
#   cmd/colony/helpdump.sh /tmp/colony-old /tmp/old.txt
#   go build -o /tmp/colony-new ./cmd/colony    # after
#   cmd/colony/helpdump.sh /tmp/colony-new /tmp/new.txt
#   diff /tmp/old.txt /tmp/new.txt
bin=$1; out=$2
: > "$out"
walk() {
  local path="$*"
  echo "===== colony $path --help" >> "$out"
  "$bin" $path --help >> "$out" 2>&1; echo "exit=$?" >> "$out"
  local subs
  subs=$("$bin" $path --help 2>/dev/null | awk '/^Available Commands:/{f=1;next} /^$/{f=0} f{print $1}')
  for s in $subs; do
    [ "$s" = help ] && continue
    walk $path $s
  done
}
walk
# Errors: usage, flag values, --output, and no coordinator.
for args in "kv" "kv get" "breaker get a" "nosuch" "lock" "kv get /x --timeout=abc" "cluster wait --members x" "-o" "version -o yaml" "kv ls / -o yaml" "kv get /x" "breaker ls -o json" "cluster status --timeout 300ms" "snapshot status /nonexistent" "coordinator --id n1 --data-dir /nonexistent-colony" "cert node --certs-dir /nonexistent-colony --name n1"; do
  echo "===== colony $args" >> "$out"
  COLONY_ENDPOINTS=127.0.0.1:1 "$bin" $args >> "$out" 2>&1; echo "exit=$?" >> "$out"
done
"$bin" completion bash > /dev/null; echo "===== completion bash sha" >> "$out"; "$bin" completion bash | sha256sum >> "$out"
COLONY_ENDPOINTS=127.0.0.1:1 "$bin" __complete breaker get "" >> "$out" 2>&1
COLONY_ENDPOINTS=127.0.0.1:1 "$bin" __complete kv watch --kind "" >> "$out" 2>&1
COLONY_ENDPOINTS=127.0.0.1:1 "$bin" __complete kv get "" >> "$out" 2>&1
COLONY_ENDPOINTS=127.0.0.1:1 "$bin" __complete "" >> "$out" 2>&1
