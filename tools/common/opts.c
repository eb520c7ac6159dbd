/*
 * opts.c — shared option parsing and messages of the pinfer tools (opts.h).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/opts.h"

int pf_opt_int(const char *prog, const char *flag, const char *arg, long long lo, long long hi, long long *ret)
{
	char *end;
	errno = 0;
	long long v = strtoll(arg, &end, 0);
	if (end == arg || *end || (errno && errno != ERANGE)) {
		fprintf(stderr, "%s: %s: \"%s\" is not an integer (it must be between %lld and %lld)\n", prog, flag, arg,
			lo, hi);
		return -EINVAL;
	}
	/* strtoll saturates on overflow with ERANGE: the number is still a
	 * number, only too large, and is reported as such */
	if (errno == ERANGE || v < lo || v > hi) {
		fprintf(stderr, "%s: %s: %s must be between %lld and %lld\n", prog, flag, arg, lo, hi);
		return -ERANGE;
	}
	*ret = v;
	return 0;
}

int pf_opt_float(const char *prog, const char *flag, const char *arg, double lo, double hi, int lo_open, double *ret)
{
	char *end;
	errno = 0;
	double v = strtod(arg, &end);
	if (end == arg || *end || isnan(v)) {
		fprintf(stderr, "%s: %s: \"%s\" is not a number\n", prog, flag, arg);
		return -EINVAL;
	}
	if (!isfinite(v) || v < lo || v > hi || (lo_open && v == lo)) {
		if (lo_open)
			fprintf(stderr, "%s: %s: %s must be greater than %g and at most %g\n", prog, flag, arg, lo, hi);
		else
			fprintf(stderr, "%s: %s: %s must be between %g and %g\n", prog, flag, arg, lo, hi);
		return -ERANGE;
	}
	*ret = v;
	return 0;
}

/* Edit distance (insertions, deletions, substitutions, and swaps of two
 * neighbours — the commonest typo) between a[0..n) and b[0..m). */
static int distance(const char *a, size_t n, const char *b, size_t m)
{
	enum { MAX = 64 };
	int d[MAX + 1][MAX + 1];
	if (n > MAX || m > MAX)
		return 1 << 20;
	for (size_t i = 0; i <= n; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= m; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= n; i++)
		for (size_t j = 1; j <= m; j++) {
			int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[n][m];
}

const char *pf_opt_closest(const struct option *longopts, const char *name)
{
	size_t n = strcspn(name, "=");
	const char *best = NULL;
	int best_d = 1 << 20;
	for (const struct option *o = longopts; o && o->name; o++) {
		int dd = distance(name, n, o->name, strlen(o->name));
		if (dd < best_d) {
			best_d = dd;
			best = o->name;
		}
	}
	/* near enough to be a typo: a third of the name, at least 2 edits */
	int limit = (int)n / 3 > 2 ? (int)n / 3 : 2;
	return best_d <= limit ? best : NULL;
}

static const struct option *find_long(const struct option *longopts, const char *name, size_t n)
{
	for (const struct option *o = longopts; o && o->name; o++)
		if (strlen(o->name) == n && !strncmp(o->name, name, n))
			return o;
	return NULL;
}

void pf_opt_error(const char *prog, int argc, char *const *argv, const char *shortopts,
		  const struct option *longopts, const struct pf_opt_hint *hints)
{
	const char *arg = optind >= 1 && optind - 1 < argc ? argv[optind - 1] : "";
	bool is_long = !strncmp(arg, "--", 2) && arg[2];
	const char *name = is_long ? arg + 2 : "";
	size_t n = strcspn(name, "=");
	const struct option *o = is_long ? find_long(longopts, name, n) : NULL;
	/* (argv[optind - 1] is the culprit unless getopt stopped inside a
	 * cluster of short options: then optopt tells, below) */
	if (o && name[n] == '=' && o->has_arg == no_argument) {
		fprintf(stderr, "%s: --%s takes no value\n", prog, o->name);
	} else if (o && o->has_arg == required_argument && !name[n] && optopt == o->val) {
		fprintf(stderr, "%s: --%s needs a value\n", prog, o->name);
	} else if (is_long && !o) {
		{
			int matches = 0;
			for (const struct option *p = longopts; p && p->name; p++)
				matches += !strncmp(p->name, name, n);
			if (matches > 1) {
				fprintf(stderr, "%s: option --%.*s is ambiguous:", prog, (int)n, name);
				const char *sep = " ";
				for (const struct option *p = longopts; p && p->name; p++)
					if (!strncmp(p->name, name, n)) {
						fprintf(stderr, "%s--%s", sep, p->name);
						sep = ", ";
					}
				fputc('\n', stderr);
			} else {
				const char *near = pf_opt_closest(longopts, name);
				fprintf(stderr, "%s: unknown option --%.*s", prog, (int)n, name);
				if (near)
					fprintf(stderr, "; did you mean --%s?", near);
				fputc('\n', stderr);
			}
		}
	} else if (optopt > 0 && optopt < 256) {
		const char *s = strchr(shortopts, optopt);
		if (s && optopt != ':' && s[1] == ':') {
			fprintf(stderr, "%s: -%c needs a value\n", prog, optopt);
		} else {
			const char *hint = NULL;
			for (const struct pf_opt_hint *h = hints; h && h->c; h++)
				if (h->c == optopt)
					hint = h->text;
			fprintf(stderr, "%s: unknown option -%c%s%s\n", prog, optopt, hint ? "; " : "", hint ? hint : "");
		}
	} else if (optopt >= 256) {
		/* a long option (its val past the letters) without its value */
		for (const struct option *p = longopts; p && p->name; p++)
			if (p->val == optopt) {
				fprintf(stderr, "%s: --%s needs a value\n", prog, p->name);
				break;
			}
	} else {
		fprintf(stderr, "%s: bad option %s\n", prog, arg);
	}
	fprintf(stderr, "%s: see `%s --help`\n", prog, prog);
}
