#!/usr/bin/env bash
# The layering check: every quoted #include in the layered folders is written
# from the repository root and points at a folder the including layer may use.
#
#   layer            may include (besides itself)
#   kernels/         nothing of ours
#   shm/             nothing of ours
#   client/          shm/
#   runtime/model/   kernels/, shm/
#   runtime/text/    runtime/model/, kernels/, shm/
#   runtime/engine/  runtime/text/, runtime/model/, kernels/, shm/
#   runtime/daemon/  runtime/engine/, runtime/text/, runtime/model/, kernels/, shm/
#   tools/server/    client/ (pinfer-server is built on libpinfer alone), and for
#                    /metrics the formatter it shares with pinfer-exporter
#                    (tools/prom_fmt.h, tools/stats_fmt.h, shm/stats.h), and tools/common/
#
# The rest of tools/, tests/ and bench/ sit on top and may include anything.  The check
# first proves it can fail: it plants an upward include in a scratch copy of
# a few files and expects a refusal.
#   tests/check/layers.sh [ROOT]
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}

allowed() { # layer -> space-separated prefixes it may include
	case $1 in
	kernels) echo "kernels/" ;;
	shm) echo "shm/" ;;
	client) echo "client/ shm/" ;;
	runtime/model) echo "runtime/model/ kernels/ shm/" ;;
	runtime/text) echo "runtime/text/ runtime/model/ kernels/ shm/" ;;
	runtime/engine) echo "runtime/engine/ runtime/text/ runtime/model/ kernels/ shm/" ;;
	runtime/daemon) echo "runtime/daemon/ runtime/engine/ runtime/text/ runtime/model/ kernels/ shm/" ;;
	tools/server) echo "tools/server/ client/ tools/common/ tools/prom_fmt.h tools/stats_fmt.h shm/stats.h" ;;
	esac
}

# check DIR: prints one line per violation, returns 1 if any
check() {
	local dir=$1 bad=0 f layer inc ok p
	while IFS= read -r f; do
		case $f in
		runtime/*/*) layer=$(cut -d/ -f1-2 <<<"$f") ;;
		runtime/*) echo "$f: a file directly in runtime/ belongs in a layer folder"; bad=1; continue ;;
		tools/server/*) layer=tools/server ;;
		*) layer=${f%%/*} ;;
		esac
		while IFS= read -r inc; do
			[ -z "$inc" ] && continue
			if [ ! -f "$dir/$inc" ]; then
				echo "$f: #include \"$inc\" is not a path from the repository root"
				bad=1
				continue
			fi
			ok=0
			for p in $(allowed "$layer"); do
				[[ $inc == "$p"* ]] && ok=1
			done
			if [ $ok -eq 0 ]; then
				echo "$f: #include \"$inc\" reaches a layer above $layer/ (allowed: $(allowed "$layer"))"
				bad=1
			fi
		done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$dir/$f")
	done < <(cd "$dir" && find kernels shm client runtime $([ -d "$dir/tools/server" ] && echo tools/server) -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sort)
	return $bad
}

# 1. The check can fail: plant an upward include in a scratch tree.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/kernels" "$tmp/runtime/engine" "$tmp/shm" "$tmp/client" "$tmp/runtime/model" "$tmp/tools/server"
echo '#include "runtime/engine/kv.h"' > "$tmp/tools/server/planted.c"
echo '#include "runtime/engine/kv.h"' > "$tmp/kernels/planted.c"
: > "$tmp/runtime/engine/kv.h"
echo '#include "kernels/planted.h"' > "$tmp/runtime/model/fine.c"
: > "$tmp/kernels/planted.h"
out=$(check "$tmp")
if [ $? -eq 0 ] || ! grep -q 'kernels/planted.c: #include "runtime/engine/kv.h" reaches a layer above' <<<"$out" \
	|| ! grep -q 'tools/server/planted.c: #include "runtime/engine/kv.h" reaches a layer above' <<<"$out" \
	|| grep -q fine.c <<<"$out"; then
	echo "layers: the check did not refuse a planted upward include (or refused a legal one):"
	echo "$out"
	exit 1
fi
echo "# planted upward include refused: $out"

# 2. The tree itself.
n=$(cd "$root" && find kernels shm client runtime $([ -d "$root/tools/server" ] && echo tools/server) -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | wc -l)
if ! out=$(check "$root"); then
	echo "layers: include direction violated:"
	echo "$out"
	exit 1
fi
echo "# $n files in kernels/ shm/ client/ runtime/ tools/server/ include only their own layer or those below"
