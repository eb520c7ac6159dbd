/*
 * opts.h — the command-line helpers every pinfer tool shares, so that a flag
 * and its messages read the same in each of them.
 *
 * One meaning per flag across the tools: -n is the number of completions
 * (pinfer; OpenAI's and vLLM's n), --max-tokens the length of a reply, -t
 * the CPU threads, -m the model file, -q quiet, -h help.  Anything else that
 * once had a short letter meaning another thing in another tool is long-only.
 *
 * Messages, written to stderr as "PROG: ...":
 *   a number out of range        --max-tokens: 99999999999 must be between 1 and 2147483647
 *   not a number                 --max-tokens: "ten" is not an integer
 *   an unknown option            unknown option --max-token; did you mean --max-tokens?
 *   an ambiguous prefix          option --m is ambiguous: --max-tokens, --min-tokens, --min-p
 *   a missing or extra value     --max-tokens needs a value / --quiet takes no value
 * The callers exit with status 2 (bad usage) after any of them.
 */
#ifndef PF_TOOLS_COMMON_OPTS_H
#define PF_TOOLS_COMMON_OPTS_H

#include <getopt.h>
#include <stdint.h>

/* Parse an integer in [lo, hi] (decimal, or 0x hex) for option `flag`
 * ("--max-tokens", "-n").  Returns 0 with *ret set, or -EINVAL (not an
 * integer) / -ERANGE (outside [lo, hi]) with the message printed. */
int pf_opt_int(const char *prog, const char *flag, const char *arg, long long lo, long long hi, long long *ret);

/* Parse a finite number in [lo, hi] for option `flag`; lo_open: lo itself
 * is refused ("must be greater than LO and at most HI").  Returns 0, or
 * -EINVAL / -ERANGE with the message printed. */
int pf_opt_float(const char *prog, const char *flag, const char *arg, double lo, double hi, int lo_open, double *ret);

/* A hint for a short option a tool does not have, e.g. { 'n', "the length
 * is --max-tokens" }; arrays end with { 0, 0 }. */
struct pf_opt_hint {
	int c;
	const char *text;
};

/*
 * Explain getopt_long's '?' (call it with opterr = 0, at the '?' or ':'
 * that getopt_long returned; argc/argv as given to getopt_long).  Names
 * the closest long option for a misspelt one, lists the candidates of an
 * ambiguous prefix, says which option lacks or must not have a value, and
 * for an unknown short option prints its hint, if hints has one.  Then
 * points at PROG --help.  Cannot fail.
 */
void pf_opt_error(const char *prog, int argc, char *const *argv, const char *shortopts,
		  const struct option *longopts, const struct pf_opt_hint *hints);

/* The long option closest to `name` (without dashes, up to a '='), or NULL
 * when none is near enough to be a likely typo.  Cannot fail. */
const char *pf_opt_closest(const struct option *longopts, const char *name);

#endif
