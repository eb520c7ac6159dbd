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

# need_model MODEL: the suites that need the model call it before starting
# pinferd.  Run by hand without it: skip (77) naming `make model`; under
# `make test` (PF_REQUIRE_MODEL=1), which has just fetched it: a failure.
need_model() {
  [ -r "$1" ] && return 0
  if [ "${PF_REQUIRE_MODEL:-0}" = 1 ]; then
    echo "FAIL: the model $1 cannot be read and PF_REQUIRE_MODEL=1: \`make model\` fetches it"
    exit 1
  fi
  echo "skip: the model $1 cannot be read: run \`make model\` or set PF_MODEL"
  exit 77
}
