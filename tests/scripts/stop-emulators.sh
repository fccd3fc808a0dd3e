#!/usr/bin/env bash
# Stops what start-emulators.sh started (by PID, children included).
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
for pidfile in "$EMULATOR_RUN"/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  pkill -P "$pid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  rm -f "$pidfile"
done
