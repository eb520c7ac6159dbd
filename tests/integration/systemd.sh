#!/usr/bin/env bash
# systemd integration:
#   1. the sd_notify sequence, read from a NOTIFY_SOCKET this test listens on:
#      STATUS=loading → READY=1 (only once the socket accepts) → WATCHDOG=1
#      (from the engine loop) → STOPPING=1 on SIGTERM, then a clean exit;
#   2. `make install DESTDIR=…` lays out units that `systemd-analyze verify`
#      accepts without a word (ExecStart pointed into the DESTDIR tree).
set -uo pipefail
build=${PF_BUILD:-build}
model=${PF_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
work=$(mktemp -d /tmp/pinfer-sd-XXXXXX)
trap 'kill -KILL $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
fail=0
failures=0
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_model "$model"

python3 - "$work/notify" "$work/msgs" <<'PY' &
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(240)
with open(sys.argv[2], "w") as out:
    while True:
        try:
            m = s.recv(4096).decode()
        except socket.timeout:
            break
        out.write(m.replace("\n", "|") + "\n"); out.flush()
        if "STOPPING=1" in m:
            break
PY
listener=$!
# (waits for conditions with generous limits: python3 starts slowly on a loaded machine)
wait_for 60 test -S "$work/notify" || { echo "FAIL: the notify listener did not start"; exit 1; }
NOTIFY_SOCKET=$work/notify WATCHDOG_USEC=400000 "$build/bin/pinferd" --model "$model" --state-file none --socket "$work/d.sock" \
  --log-level warn 2>"$work/log" &
d=$!
wait_for 200 grep -qs "READY=1" "$work/msgs"
if grep -q "READY=1" "$work/msgs"; then
  [ -S "$work/d.sock" ] && echo "# ok: READY=1 sent with the socket listening" || { echo "FAIL: READY before the socket"; fail=1; }
else
  echo "FAIL: no READY=1"; fail=1
fi
head -1 "$work/msgs" | grep -q "^STATUS=loading" && echo "# ok: STATUS=loading first" || { echo "FAIL: first message: $(head -1 "$work/msgs")"; fail=1; }
wait_for 60 grep -q "WATCHDOG=1" "$work/msgs"
grep -q "WATCHDOG=1" "$work/msgs" && echo "# ok: WATCHDOG=1 from the engine loop" || { echo "FAIL: no WATCHDOG=1"; fail=1; }
kill -TERM "$d"
wait "$d"; rc=$?
wait "$listener"
grep -q "STOPPING=1" "$work/msgs" && [ $rc = 0 ] && echo "# ok: SIGTERM → STOPPING=1, exit 0" || { echo "FAIL: STOPPING/exit ($rc)"; fail=1; }

if command -v systemd-analyze >/dev/null && [ "${PF_ASAN:-0}" != 1 ]; then
  dest=$work/root
  if make -s install DESTDIR="$dest" PREFIX=/usr/local >"$work/install.log" 2>&1; then
    for u in "$dest"/usr/local/lib/systemd/system/*.service; do
      sed -i "s|ExecStart=/usr/local/bin/|ExecStart=$dest/usr/local/bin/|" "$u"
    done
    out=$(systemd-analyze verify "$dest"/usr/local/lib/systemd/system/*.service 2>&1)
    [ -z "$out" ] && echo "# ok: systemd-analyze verify: silent" || { echo "FAIL: systemd-analyze verify said: $out"; fail=1; }
  else
    echo "FAIL: make install"; cat "$work/install.log"; fail=1
  fi
else
  echo "# (unit verification skipped: systemd-analyze missing or sanitizer build)"
fi
exit $fail
