#!/usr/bin/env bash
# The command-line tools: one meaning per flag, messages that say what is
# wrong, and the CLI's defaults.
#   1. bad invocations exit 2 with a message naming the value's range ("must
#      be between 1 and 2147483647", not "is not an integer"), the closest
#      option to a misspelt one ("did you mean --max-tokens?"), the
#      candidates of an ambiguous prefix, a missing or unwanted value — in
#      pinfer, pinfer-run, pinfer-top and pinfer-exporter; -n and -t where a
#      tool gave them other meanings are refused with the long flag to use;
#   2. every tool's --help: a short -n is the number of completions and a
#      short -t the threads wherever they appear; pinfer's help states its
#      defaults (temperature 0.7, top-p 0.9, 256 tokens for generate);
#   3. against an echo pinferd (it answers max_tokens tokens): `pinfer
#      generate` without --max-tokens gives 256 tokens, `pinfer chat` 512;
#   4. `pinfer chat` on a terminal (tmux): a line edited with the arrow keys,
#      an earlier one recalled with Up, Ctrl-D quits with 0.
set -uo pipefail
build=${PF_BUILD:-build}
failures=0
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
bin=$build/bin
for b in pinfer pinfer-run pinfer-top pinfer-exporter pinfer-synth-gguf pinferd; do
  [ -x "$bin/$b" ] || { echo "FAIL: $bin/$b is not built"; exit 1; }
done
work=$(mktemp -d /tmp/pinfer-cli-XXXXXX)
dpid=
trap '[ -n "$dpid" ] && kill -KILL $dpid 2>/dev/null; tmux -S "$work/tmux.sock" kill-server 2>/dev/null; rm -rf "$work"' EXIT

# expect STATUS PATTERN COMMAND...: COMMAND exits STATUS and says PATTERN
# (a fixed string) on stderr.  No daemon is running at the socket: every
# case must be refused while parsing, before any connection.
expect() {
  local want=$1 pat=$2; shift 2
  "$@" >"$work/out" 2>"$work/err"; local rc=$?
  if [ $rc = "$want" ] && grep -qF -- "$pat" "$work/err"; then
    ok "${*#"$bin/"} -> $rc: $(grep -F -- "$pat" "$work/err" | head -1)"
  else
    fail "$* -> exit $rc (want $want), stderr: $(head -3 "$work/err" | tr '\n' '|') (want: $pat)"
  fi
}

# ---- 1. bad invocations ------------------------------------------------------------
g=("$bin/pinfer" generate --socket "$work/none.sock")
expect 2 "--max-tokens: 99999999999 must be between 1 and 2147483647" "${g[@]}" --max-tokens 99999999999 hi
expect 2 '--max-tokens: "ten" is not an integer' "${g[@]}" --max-tokens ten hi
expect 2 "unknown option --max-tokns; did you mean --max-tokens?" "${g[@]}" --max-tokns 5 hi
expect 2 "unknown option --tempreature; did you mean --temperature?" "${g[@]}" --tempreature 0.5 hi
expect 2 "option --m is ambiguous: --min-p, --max-tokens, --min-tokens" "${g[@]}" --m 5 hi
expect 2 "--max-tokens needs a value" "${g[@]}" --max-tokens
expect 2 "--quiet takes no value" "${g[@]}" --quiet=yes hi
expect 2 "-n: 17 must be between 1 and 16" "${g[@]}" -n 17 hi
expect 2 "--top-p: 1.5 must be greater than 0 and at most 1" "${g[@]}" --top-p 1.5 hi
expect 2 "--temperature: -1 must be between 0 and 100" "${g[@]}" --temperature -1 hi
expect 2 '--temperature: "warm" is not a number' "${g[@]}" --temperature warm hi
expect 2 "--beam-width: 9 must be between 0 and 8" "${g[@]}" --beam-width 9 hi
expect 2 "unknown option -x" "${g[@]}" -x hi
expect 2 "-n: 0 must be between 1 and 16" "$bin/pinfer" chat --socket "$work/none.sock" -n 0
expect 2 "unknown option -n; the length is --max-tokens" "$bin/pinfer-run" -n 4 --chat hi
expect 2 "--max-tokens: 99999999999 must be between 1 and 1048576" "$bin/pinfer-run" --max-tokens 99999999999 --chat hi
expect 2 "unknown option --temprature; did you mean --temperature?" "$bin/pinfer-run" --temprature 0 --chat hi
expect 2 "--interval: 99999999999 must be between 0 and 60000" "$bin/pinfer-top" --interval 99999999999
expect 2 "unknown option --intervall; did you mean --interval?" "$bin/pinfer-top" --intervall 5
expect 2 "unknown option --lisen; did you mean --listen?" "$bin/pinfer-exporter" --lisen 127.0.0.1:0
expect 2 "--requests: 99999999999 must be between 1 and 1048576" "$bin/pinfer-bench-e2e" --requests 99999999999
expect 2 '--threads: "many" is not an integer' "$bin/pinfer-bench" --threads many
expect 2 "here: --dry-run" "$bin/pinfer-synth-gguf" -n -o "$work/x.gguf"
expect 2 "here: --type" "$bin/pinfer-synth-gguf" -t q4_0 -o "$work/x.gguf"
# the same misspelling far from any option gets no guess
"$bin/pinfer" generate --socket "$work/none.sock" --zzzzzz hi 2>"$work/err"
grep -q "unknown option --zzzzzz$" "$work/err" && ok "no guess for --zzzzzz" || fail "--zzzzzz: $(cat "$work/err")"

# ---- 2. --help: one meaning per short flag -------------------------------------------
for t in "$bin"/*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  # (leak checks are other suites' business: pinferd --help leaves its
  # context to the exit under ASan)
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 "$t" --help >"$work/help" 2>&1 || fail "$name --help exited $?"
  # an option line: two to six spaces, then -n or -t as a flag
  grep -E '^ {1,8}-n([ ,]|$)' "$work/help" | grep -vq "completions" && fail "$name --help: -n is not the number of completions: $(grep -E '^ {1,8}-n([ ,]|$)' "$work/help")"
  grep -E '^ {1,8}-t([ ,]|$)' "$work/help" | grep -vq "threads" && fail "$name --help: -t is not the threads: $(grep -E '^ {1,8}-t([ ,]|$)' "$work/help")"
  grep -qE '(^|[ [])-n (ITERATIONS|N)\b.*(iterations|requests|MiB)|-t SECONDS' "$work/help" && fail "$name --help still uses -n/-t for something else"
done
ok "every tool's --help: -n is completions, -t threads, where they appear"
"$bin/pinfer" --help >"$work/help"
for want in "--temperature F          [0.7]" "--top-p F                [0.9]" "--max-tokens N           [256 for generate, 512 for chat]" \
            "-n N                     [1] independent completions" "-n is the number of completions"; do
  grep -qF -- "$want" "$work/help" || fail "pinfer --help lacks: $want"
done
grep -qF -- "--max-tokens N" "$work/help" && ok "pinfer --help states the CLI defaults (temperature 0.7, top-p 0.9, 256 tokens)"
"$bin/pinfer-run" --help | grep -qE '^ +--max-tokens N' && ! "$bin/pinfer-run" --help | grep -qE '^ +-n' \
  && ok "pinfer-run --help: --max-tokens, no -n" || fail "pinfer-run --help: $("$bin/pinfer-run" --help | grep -- max-tokens)"
"$bin/pinfer-synth-gguf" --help | grep -qE '^ +--dry-run' && ! "$bin/pinfer-synth-gguf" --help | grep -qE '^ +-[nt],' \
  && ok "pinfer-synth-gguf --help: --dry-run and --type long only" || fail "pinfer-synth-gguf --help still has -n/-t"

# ---- 3. the defaults, seen through an echo daemon ------------------------------------
"$bin/pinferd" --echo-backend --socket "$work/e.sock" --state-file none --log-level warn 2>"$work/d.log" &
dpid=$!
wait_for 30 test -S "$work/e.sock" || { fail "echo pinferd did not start:"; cat "$work/d.log"; }
"$bin/pinfer" generate --socket "$work/e.sock" hello >/dev/null 2>"$work/gen.err"
grep -q "generated 256;" "$work/gen.err" && ok "pinfer generate without --max-tokens: 256 tokens" \
  || fail "pinfer generate default length: $(cat "$work/gen.err")"
echo hi | "$bin/pinfer" chat --socket "$work/e.sock" >/dev/null 2>"$work/chat.err"
grep -q "generated 512;" "$work/chat.err" && ok "pinfer chat without --max-tokens: 512 tokens" \
  || fail "pinfer chat default length: $(cat "$work/chat.err")"
"$bin/pinfer" generate --socket "$work/e.sock" --max-tokens 3 hello >/dev/null 2>"$work/gen.err"
grep -q "generated 3;" "$work/gen.err" && ok "--max-tokens 3: 3 tokens" || fail "--max-tokens 3: $(cat "$work/gen.err")"

# ---- 4. pinfer chat on a terminal: line editing and history (libedit) --------------
# Typed under tmux: "helo", Left, "l" must send "hello" (the echo daemon
# answers with the conversation's first bytes, so the reply shows
# "userhello"); then Up recalls "hello", "!" is appended and the line reads
# "> hello!" when it is sent (and answered).  Without line editing the
# terminal would echo and send the escape sequences of the arrows instead.
if command -v tmux >/dev/null; then
  tm() { tmux -S "$work/tmux.sock" "$@"; }
  pane() { tm capture-pane -p -t chat >"$work/pane" 2>/dev/null; }
  pane_has() { pane && grep -qF -- "$1" "$work/pane"; }
  tm -f /dev/null new-session -d -s chat -x 120 -y 30 \
    "TERM=screen $bin/pinfer chat --socket $work/e.sock --max-tokens 24 -q; echo \$? >$work/chat.rc; sleep 30" 2>"$work/tmux.err" \
    || fail "tmux did not start: $(cat "$work/tmux.err")"
  prompt_shown() { pane && grep -qx ">" "$work/pane"; }
  if wait_for 30 prompt_shown; then
    tm send-keys -t chat "helo" Left l Enter
    wait_for 30 pane_has "userhello" && ok "chat on a terminal: the line was edited (Left, insert) before it was sent" \
      || { fail "chat line editing:"; cat "$work/pane"; }
    tm send-keys -t chat Up "!" Enter
    recalled() { pane && grep -qx "> hello!" "$work/pane" && [ "$(grep -c "^userhello" "$work/pane")" -ge 2 ]; }
    wait_for 30 recalled && ok "chat on a terminal: Up recalled the previous line, sent with \"!\" appended" \
      || { fail "chat history:"; cat -A "$work/pane" | grep -v "^\$$"; }
    tm send-keys -t chat C-d
    wait_for 30 test -s "$work/chat.rc" && [ "$(cat "$work/chat.rc")" = 0 ] && ok "Ctrl-D at the prompt: exit 0" \
      || fail "Ctrl-D: exit $(cat "$work/chat.rc" 2>/dev/null)"
  else
    fail "no chat prompt:"; pane; cat "$work/pane"
  fi
  tm kill-server 2>/dev/null
else
  echo "# note: tmux not installed: line editing in pinfer chat is not tested"
fi
kill -TERM $dpid; wait $dpid 2>/dev/null; dpid=

[ $failures = 0 ] && echo "cli: all checks passed" || echo "cli: $failures check(s) failed"
exit $((failures > 0))
