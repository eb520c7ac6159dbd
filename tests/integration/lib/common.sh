# Helpers shared by the integration scripts (sourced, not run as a suite).
# The caller sets failures=0 first.

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "# ok: $*"; }

# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds;
# 1 when it never did.  Tests wait for conditions, never for fixed times.
wait_for() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  while [ $SECONDS -lt $end ]; do "$@" && return 0; sleep 0.1; done
  return 1
}
