#!/usr/bin/env bash
# `make install` to a private prefix, end to end, the way a user without
# root does it:
#   1. make install PREFIX=<fresh dir>: every file lands under that prefix,
#      and nothing named pinfer is created or changed anywhere else (in
#      particular no /etc/pinfer: SYSCONFDIR defaults under a private prefix);
#   2. the unit files and the tmpfiles snippet name the real prefix (no
#      /usr/local, no /etc/pinfer left in them);
#   3. a small C program built with `pkg-config --cflags --libs pinfer`
#      against that prefix only — pinfer.h and <pinfer/stats.h>, the header
#      pinfer.h sends pinfer_stats_open() users to — runs against the
#      installed libpinfer.so.1 and an installed pinferd (echo backend): it
#      generates, and reads the stats segment with pf_stats_read();
#   4. DESTDIR stages the same tree under DESTDIR without writing the prefix;
#      `make uninstall` removes what install put there.
# Skipped under the sanitizer build (its libpinfer needs the ASan runtime
# in every program that links it).
set -uo pipefail
build=${PF_BUILD:-build}
failures=0
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

[ "${PF_ASAN:-0}" = 1 ] && { echo "skip: install test not run on the sanitizer build"; exit 77; }
command -v pkg-config >/dev/null || { echo "FAIL: pkg-config missing"; exit 1; }
[ -x "$build/bin/pinferd" ] && [ -f "$build/libpinfer.so.1" ] || { echo "FAIL: $build is not built"; exit 1; }

work=$(mktemp -d /tmp/pinfer-install-XXXXXX)
dpid=
trap '[ -n "$dpid" ] && kill -KILL $dpid 2>/dev/null; rm -rf "$work"' EXIT
prefix=$work/prefix
# Build the same flavour the tree was built with, so that install finds
# everything up to date instead of compiling another configuration.
cuda=0
[ -d "$build/obj/kernels/cuda" ] && cuda=1
mk() { make -s --no-print-directory BUILD="$build" PF_CUDA=$cuda "$@"; }

# ---- 1. the install writes under PREFIX only ---------------------------------------
etc_before=$( [ -e /etc/pinfer ] && echo present || echo absent )
# (a second older than now: -newer is strict and some filesystems keep
# coarse mtimes)
touch -d '1 second ago' "$work/marker"
if mk install PREFIX="$prefix" >"$work/install.log" 2>&1; then
  ok "make install PREFIX=$prefix"
else
  fail "make install PREFIX=$prefix:"; cat "$work/install.log"; exit 1
fi
for f in bin/pinferd bin/pinfer bin/pinfer-exporter lib/libpinfer.so.1 lib/libpinfer.so lib/libpinfer.a \
         include/pinfer.h include/pinfer/stats.h lib/pkgconfig/pinfer.pc etc/pinfer/pinferd.conf.example \
         lib/systemd/system/pinferd.service lib/systemd/system/pinfer-exporter.service \
         lib/sysusers.d/pinfer.conf lib/tmpfiles.d/pinfer.conf share/doc/pinfer/README.md; do
  [ -e "$prefix/$f" ] || fail "not installed: \$PREFIX/$f"
done
[ "$etc_before" = absent ] && [ -e /etc/pinfer ] && fail "the install created /etc/pinfer outside its prefix"
# Anything named pinfer written since the marker, outside the prefix and
# outside the places where builds and tests of this tree write:
outside=$(find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /var/tmp \
            -o -path /work -o -path "$PWD" -o -path "$HOME/.cache" \) -prune -o -newer "$work/marker" \
            \( -iname '*pinfer*' -o -path '*pinfer*' \) -print 2>/dev/null | head -20)
[ -z "$outside" ] && ok "nothing named pinfer written outside the prefix (no /etc/pinfer: $etc_before before, $( [ -e /etc/pinfer ] && echo present || echo absent) after)" \
  || fail "written outside the prefix: $outside"

# ---- 2. unit files name the real prefix ------------------------------------------------
units="$prefix/lib/systemd/system/pinferd.service $prefix/lib/systemd/system/pinfer-exporter.service $prefix/lib/tmpfiles.d/pinfer.conf"
if sed "s|$prefix/||g" $units | grep -n "/usr/local\|/etc/pinfer" >"$work/stale"; then
  fail "unit files still name the default prefix:"; cat "$work/stale"
else
  grep -q "^ExecStart=$prefix/bin/pinferd --config $prefix/etc/pinfer/pinferd.conf" "$prefix/lib/systemd/system/pinferd.service" \
    && grep -q "^ExecStart=$prefix/bin/pinfer-exporter " "$prefix/lib/systemd/system/pinfer-exporter.service" \
    && grep -q "^Documentation=file:$prefix/share/doc/pinfer/README.md" "$prefix/lib/systemd/system/pinferd.service" \
    && grep -q "^d $prefix/etc/pinfer " "$prefix/lib/tmpfiles.d/pinfer.conf" \
    && ok "units and tmpfiles name \$PREFIX/bin, \$PREFIX/etc/pinfer and \$PREFIX/share/doc" \
    || { fail "unit paths:"; grep -h "ExecStart\|Documentation\|^d " $units; }
fi

# ---- 3. a program built against the prefix with pkg-config -------------------------
cat >"$work/prog.c" <<'EOF'
/* Uses only what the install provides: pinfer.h, <pinfer/stats.h>. */
#include <errno.h>
#include <pinfer.h>
#include <pinfer/stats.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int on_event(void *ctx, const struct pinfer_event *ev)
{
	if (ev->kind == PINFER_EVENT_TOKEN)
		fwrite(ev->text, 1, ev->text_len, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	char err[256] = "";
	struct pinfer_connect_opts o;
	pinfer_connect_opts_init(&o);
	o.socket_path = argv[1];
	o.err = err;
	o.err_len = sizeof(err);
	struct pinfer *c;
	int r = pinfer_connect(&o, &c);
	if (r < 0) {
		fprintf(stderr, "connect: %s\n", err);
		return 1;
	}
	struct pinfer_params p;
	pinfer_params_init(&p);
	p.max_tokens = 4;
	r = pinfer_generate(c, "installed", &p, on_event, NULL);
	printf("\n");
	if (r < 0) {
		fprintf(stderr, "generate: %s\n", pinfer_last_error(c));
		return 1;
	}
	int fd = pinfer_stats_open(&o);
	if (fd < 0) {
		fprintf(stderr, "stats: %s\n", err);
		return 1;
	}
	const struct pf_stats *m = mmap(NULL, sizeof(*m), PROT_READ, MAP_SHARED, fd, 0);
	static struct pf_stats s;
	if (m == MAP_FAILED || pf_stats_read(m, &s) < 0 || s.magic != PF_STATS_MAGIC) {
		fprintf(stderr, "stats: cannot read the segment\n");
		return 1;
	}
	printf("stats version %u model %s clients %d\n", s.version, s.model, s.n_clients);
	pinfer_close(c);
	return 0;
}
EOF
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
if flags=$(pkg-config --cflags --libs pinfer 2>"$work/pc.err"); then
  # -I/-L must point into the prefix and nowhere into this tree
  if [[ "$flags" == *"-I$prefix/include"* ]] && [[ "$flags" == *"-L$prefix/lib"* ]] && [[ "$flags" != *"$PWD"* ]]; then
    ok "pkg-config --cflags --libs pinfer: $flags"
  else
    fail "pkg-config flags do not point into the prefix: $flags"
  fi
  # shellcheck disable=SC2086
  if ${CC:-cc} -std=gnu11 -Wall -Werror -o "$work/prog" "$work/prog.c" $flags 2>"$work/cc.err"; then
    ok "a program using pinfer.h and <pinfer/stats.h> compiles against the prefix alone"
  else
    fail "compiling against the prefix:"; cat "$work/cc.err"
  fi
else
  fail "pkg-config pinfer:"; cat "$work/pc.err"
fi
if [ -x "$work/prog" ]; then
  "$prefix/bin/pinferd" --echo-backend --socket "$work/d.sock" --state-file none --log-level warn 2>"$work/d.log" &
  dpid=$!
  wait_for 30 test -S "$work/d.sock" || { fail "the installed pinferd did not start:"; cat "$work/d.log"; }
  LD_LIBRARY_PATH=$prefix/lib "$work/prog" "$work/d.sock" >"$work/prog.out" 2>&1; rc=$?
  lib=$(LD_LIBRARY_PATH=$prefix/lib ldd "$work/prog" | awk '/libpinfer/ { print $3 }')
  if [ $rc = 0 ] && grep -q "^stats version [0-9]* model echo clients [1-9]" "$work/prog.out" && [ "$lib" = "$prefix/lib/libpinfer.so.1" ]; then
    ok "it runs against the installed libpinfer.so.1 and pinferd: $(head -c 60 "$work/prog.out" | tr '\n' '|')"
  else
    fail "the program (exit $rc, libpinfer from '$lib'):"; cat "$work/prog.out"
  fi
  kill -TERM $dpid; wait $dpid 2>/dev/null; dpid=
fi

# ---- 4. DESTDIR stages without touching the prefix; uninstall cleans up ---------------
stage=$work/stage
if mk install PREFIX=/opt/pinfer-test DESTDIR="$stage" >"$work/stage.log" 2>&1; then
  [ -x "$stage/opt/pinfer-test/bin/pinferd" ] && [ -f "$stage/opt/pinfer-test/etc/pinfer/pinferd.conf.example" ] \
    && [ ! -e /opt/pinfer-test ] && grep -q "^libdir=/opt/pinfer-test/lib" "$stage/opt/pinfer-test/lib/pkgconfig/pinfer.pc" \
    && grep -q "^ExecStart=/opt/pinfer-test/bin/pinferd --config /opt/pinfer-test/etc/pinfer/pinferd.conf" \
         "$stage/opt/pinfer-test/lib/systemd/system/pinferd.service" \
    && ok "DESTDIR: staged under DESTDIR, files name the final prefix" || fail "DESTDIR staging: $(find "$stage" | head)"
else
  fail "make install DESTDIR:"; cat "$work/stage.log"
fi
if mk uninstall PREFIX="$prefix" >"$work/uninstall.log" 2>&1; then
  left=$(find "$prefix" -type f -o -type l)
  [ -z "$left" ] && ok "make uninstall removed every file" || fail "left after uninstall: $left"
else
  fail "make uninstall:"; cat "$work/uninstall.log"
fi

[ $failures = 0 ] && echo "install: all checks passed" || echo "install: $failures check(s) failed"
exit $((failures > 0))
