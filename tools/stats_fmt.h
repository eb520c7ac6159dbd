/*
 * stats_fmt.h — what pinfer-top and pinfer-exporter share about reading
 * pinferd's stats segment (shm/stats.h): finding and mapping it, noticing
 * that the daemon died or restarted, percentiles from its histograms, and
 * making its strings safe for terminals, JSON and Prometheus labels.
 * Header-only (static inline); tools-local, not part of libpinfer.
 *
 * Liveness.  pinferd drops a stats reader's socket right after handing over
 * the segment, and the mapping of a dead daemon's memfd stays readable (it
 * just stops changing), and an idle daemon does not rewrite the segment
 * either — so neither the socket nor the contents say whether the daemon is
 * alive.  stats_src_refresh() therefore registers anew each time it is
 * called (one connect and one fd over SCM_RIGHTS: cheap at a few per
 * second): failure means the daemon is gone; a segment with another inode
 * than the one mapped means a new daemon, and the mapping is replaced.
 *
 *   closed ──refresh ok──► mapped ──refresh, same inode──► mapped
 *     ▲                      │ refresh, new inode: remap (returns 1)
 *     └────refresh fails─────┘
 */
#ifndef PF_TOOLS_STATS_FMT_H
#define PF_TOOLS_STATS_FMT_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/pinfer.h"
#include "shm/stats.h"

/* ---- the segment ------------------------------------------------------------- */

struct stats_src {
	int fd;                       /* -1: not mapped */
	const struct pf_stats *map;
	dev_t dev;
	ino_t ino;
};

static inline void stats_src_init(struct stats_src *s)
{
	s->fd = -1;
	s->map = NULL;
	s->dev = 0;
	s->ino = 0;
}

/* Unmap and close.  Accepts a closed source.  Cannot fail. */
static inline void stats_src_close(struct stats_src *s)
{
	if (s->map)
		munmap((void *)s->map, sizeof(*s->map));
	if (s->fd >= 0)
		close(s->fd);
	stats_src_init(s);
}

/*
 * Register with the daemon named by opts (socket/instance; opts->err gets
 * the reason on failure) and make sure the segment it hands out is the one
 * mapped.  Returns 0 (same daemon as before), 1 (a segment newly mapped:
 * first connection or a restarted daemon — counters may have gone back),
 * or a negative errno (daemon unreachable, or its segment unusable; the old
 * mapping is closed then).
 */
static inline int stats_src_refresh(struct stats_src *s, const struct pinfer_connect_opts *opts)
{
	struct stat st;
	int fd = pinfer_stats_open(opts);
	if (fd < 0) {
		stats_src_close(s);
		return fd;
	}
	bool stat_ok = fstat(fd, &st) == 0;
	if (!stat_ok || st.st_size < (off_t)sizeof(struct pf_stats)) {
		int r = stat_ok ? -EPROTO : -errno;
		if (opts->err && opts->err_len)
			snprintf(opts->err, opts->err_len, "the daemon's stats segment is too small or unreadable");
		close(fd);
		stats_src_close(s);
		return r;
	}
	if (s->map && st.st_dev == s->dev && st.st_ino == s->ino) {
		close(fd);
		return 0;
	}
	void *m = mmap(NULL, sizeof(struct pf_stats), PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		int r = -errno;
		if (opts->err && opts->err_len)
			snprintf(opts->err, opts->err_len, "cannot map the stats segment: %s", strerror(errno));
		close(fd);
		stats_src_close(s);
		return r;
	}
	stats_src_close(s);
	s->fd = fd;
	s->map = m;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	return 1;
}

/* Consistent snapshot of the mapped segment into *dst.  Returns 0, -ENOTCONN
 * (nothing mapped), -EAGAIN (the daemon kept writing; try again) or -EPROTO
 * (not a segment layout this build understands). */
static inline int stats_src_read(const struct stats_src *s, struct pf_stats *dst)
{
	if (!s->map)
		return -ENOTCONN;
	int r = pf_stats_read(s->map, dst);
	if (r < 0)
		return -EAGAIN;
	if (dst->magic != PF_STATS_MAGIC || dst->version != PF_STATS_VERSION || dst->size != sizeof(*dst))
		return -EPROTO;
	/* the daemon NUL-terminates them; a reader never trusts that */
	dst->model[sizeof(dst->model) - 1] = '\0';
	dst->backend[sizeof(dst->backend) - 1] = '\0';
	if (dst->n_clients < 0)
		dst->n_clients = 0;
	if (dst->n_clients > PF_STATS_MAX_CLIENTS)
		dst->n_clients = PF_STATS_MAX_CLIENTS;
	for (int i = 0; i < dst->n_clients; i++)
		dst->clients[i].comm[sizeof(dst->clients[i].comm) - 1] = '\0';
	return 0;
}

/* ---- numbers ----------------------------------------------------------------- */

/* Names of the finish reasons, indexed by enum pf_stats_finish (the same
 * words as pinfer_finish_reason_str). */
static inline const char *stats_finish_name(int i)
{
	static const char *const names[PF_STATS_FIN_COUNT] = {
		"stop", "length", "cancelled", "error", "deadline", "stalled",
	};
	return i >= 0 && i < PF_STATS_FIN_COUNT ? names[i] : "unknown";
}

/* Observations in a histogram (the sum of its per-bucket counts). */
static inline uint64_t stats_hist_total(const struct pf_stats_hist *h)
{
	uint64_t n = 0;
	for (int i = 0; i < PF_STATS_HIST_BUCKETS; i++)
		n += h->counts[i];
	return n;
}

/*
 * Estimate quantile q (0..1) of a histogram the way Prometheus's
 * histogram_quantile() does: find the bucket holding rank q*n and
 * interpolate linearly between its bounds (the first bucket starts at 0).
 * A rank in the +Inf bucket gives the last finite bound, the best lower
 * estimate there is.  Returns NAN for an empty histogram.
 */
static inline double stats_hist_quantile(const struct pf_stats_hist *h, double q)
{
	uint64_t n = stats_hist_total(h), cum = 0;
	if (!n)
		return NAN;
	double rank = q * (double)n;
	double last_finite = 0;
	for (int i = 0; i < PF_STATS_HIST_BUCKETS; i++) {
		double hi = h->bounds[i], lo = i ? h->bounds[i - 1] : 0.0;
		uint64_t c = h->counts[i];
		if (isfinite(hi))
			last_finite = hi;
		if (c && (double)(cum + c) >= rank) {
			if (!isfinite(hi))
				return isfinite(lo) ? lo : last_finite;
			if (lo > hi)
				lo = hi;
			double frac = (rank - (double)cum) / (double)c;
			if (frac < 0)
				frac = 0;
			return lo + (hi - lo) * frac;
		}
		cum += c;
	}
	return last_finite;
}

/* Mean of a histogram's observations, NAN when empty. */
static inline double stats_hist_mean(const struct pf_stats_hist *h)
{
	uint64_t n = stats_hist_total(h);
	return n ? h->sum / (double)n : NAN;
}

/*
 * Shortest decimal text that reads back as v, with ".0" on integral values
 * — what Python's repr() and so prometheus_client write (le="1.0",
 * le="0.0025", "+Inf", "NaN").  Cannot fail; buf of 32 bytes suffices.
 */
static inline void stats_fmt_double(char *buf, size_t len, double v)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	int prec = 1;
	for (; prec < 17; prec++) {
		snprintf(buf, len, "%.*e", prec - 1, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	/* buf is now d.ddde±XX with the fewest digits; like repr(), write
	 * positional notation for exponents -4..15 */
	int exp10 = atoi(strchr(buf, 'e') + 1);
	if (exp10 >= -4 && exp10 < 16) {
		int decimals = prec - 1 - exp10;
		snprintf(buf, len, "%.*f", decimals > 0 ? decimals : 0, v);
		if (!strchr(buf, '.'))
			strncat(buf, ".0", len - strlen(buf) - 1);
	}
}

/* ---- strings ----------------------------------------------------------------- */

/* Length of the valid UTF-8 character at s[0..n) (1..4), or 0 when the
 * bytes there are not one (bad lead, bad continuation, overlong form,
 * surrogate, above U+10FFFF, cut short).  *cp gets the code point. */
static inline int stats_utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c = s[0], min;
	int len;
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if ((c & 0xe0) == 0xc0) {
		len = 2, c &= 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3, c &= 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4, c &= 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < (size_t)len)
		return 0;
	for (int i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/*
 * Copy the NUL-terminated src into dst (size len >= 1) for display: control
 * characters and invalid UTF-8 become '?'; with ascii_only, so does every
 * non-ASCII character.  Always NUL-terminates; never splits a character.
 * Cannot fail.
 */
static inline void stats_sanitize(char *dst, size_t len, const char *src, bool ascii_only)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t n = strlen(src), o = 0;
	while (n) {
		uint32_t cp;
		int l = stats_utf8_char(s, n, &cp);
		bool bad = !l || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || (ascii_only && cp >= 0x80);
		int out = bad ? 1 : l;
		if (o + (size_t)out + 1 > len)
			break;
		if (bad)
			dst[o] = '?';
		else
			memcpy(dst + o, s, (size_t)l);
		o += (size_t)out;
		s += l ? l : 1;
		n -= l ? (size_t)l : 1;
	}
	dst[o] = '\0';
}

/* Write src as a JSON string literal (quotes included): ", \ and control
 * characters escaped, invalid UTF-8 replaced by U+FFFD so the output always
 * parses. */
static inline void stats_json_str(FILE *f, const char *src)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t n = strlen(src);
	fputc('"', f);
	while (n) {
		uint32_t cp;
		int l = stats_utf8_char(s, n, &cp);
		if (!l) {
			fputs("\\ufffd", f);
			s++, n--;
			continue;
		}
		if (cp == '"' || cp == '\\')
			fprintf(f, "\\%c", (int)cp);
		else if (cp == '\n')
			fputs("\\n", f);
		else if (cp == '\t')
			fputs("\\t", f);
		else if (cp < 0x20 || cp == 0x7f)
			fprintf(f, "\\u%04x", (unsigned)cp);
		else
			fwrite(s, 1, (size_t)l, f);
		s += l, n -= (size_t)l;
	}
	fputc('"', f);
}

/* Write src as a Prometheus label value (quotes included; text format
 * 0.0.4 escapes \, " and newline; label values must be UTF-8, so invalid
 * bytes become U+FFFD). */
static inline void stats_prom_label(FILE *f, const char *src)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t n = strlen(src);
	fputc('"', f);
	while (n) {
		uint32_t cp;
		int l = stats_utf8_char(s, n, &cp);
		if (!l) {
			fputs("\xef\xbf\xbd", f);
			s++, n--;
			continue;
		}
		if (cp == '"' || cp == '\\')
			fprintf(f, "\\%c", (int)cp);
		else if (cp == '\n')
			fputs("\\n", f);
		else
			fwrite(s, 1, (size_t)l, f);
		s += l, n -= (size_t)l;
	}
	fputc('"', f);
}

/* ---- human-readable ------------------------------------------------------------ */

/* "3d04h", "2h05m", "4m07s", "12s".  Cannot fail. */
static inline void stats_fmt_uptime(char *buf, size_t len, uint64_t s)
{
	if (s >= 86400)
		snprintf(buf, len, "%llud%02lluh", (unsigned long long)(s / 86400), (unsigned long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600), (unsigned long long)(s % 3600 / 60));
	else if (s >= 60)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60), (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%llus", (unsigned long long)s);
}

/* A duration in seconds as "850us", "12.3ms", "1.23s", "-" for NAN. */
static inline void stats_fmt_secs(char *buf, size_t len, double s)
{
	if (isnan(s))
		snprintf(buf, len, "-");
	else if (s < 1e-3)
		snprintf(buf, len, "%.0fus", s * 1e6);
	else if (s < 1.0)
		snprintf(buf, len, "%.1fms", s * 1e3);
	else if (s < 100.0)
		snprintf(buf, len, "%.2fs", s);
	else
		snprintf(buf, len, "%.0fs", s);
}

/* A count, exact below a million, then "12.3M", "4.56G". */
static inline void stats_fmt_count(char *buf, size_t len, uint64_t n)
{
	if (n < 1000000)
		snprintf(buf, len, "%llu", (unsigned long long)n);
	else if (n < 1000000000)
		snprintf(buf, len, "%.2fM", (double)n / 1e6);
	else if (n < 1000000000000ull)
		snprintf(buf, len, "%.2fG", (double)n / 1e9);
	else
		snprintf(buf, len, "%.2fT", (double)n / 1e12);
}

#endif
