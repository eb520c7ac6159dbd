/*
 * manyclients.c — one process registering many connections, for uidquota.sh.
 *
 * Connects --n clients through libpinfer, one after another, stopping at
 * the first refusal; prints "registered K of N" and, if one was refused,
 * "refused: MESSAGE"; then holds the connections for --seconds (or until
 * killed), so the script can check what others get meanwhile.
 *
 * usage: manyclients --socket PATH --n N [--seconds S]
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/pinfer.h"

int main(int argc, char **argv)
{
	const char *path = NULL;
	int n = 1;
	double secs = 300;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--socket"))
			path = argv[i + 1];
		else if (!strcmp(argv[i], "--n"))
			n = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			secs = atof(argv[i + 1]);
	}
	if (!path || n < 1 || n > 4096) {
		fprintf(stderr, "usage: manyclients --socket PATH --n N [--seconds S]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct pinfer **c = calloc((size_t)n, sizeof(*c));
	if (!c)
		return 1;
	char err[512] = "";
	int k = 0;
	for (; k < n; k++) {
		struct pinfer_connect_opts o;
		pinfer_connect_opts_init(&o);
		o.socket_path = path;
		o.err = err;
		o.err_len = sizeof(err);
		if (pinfer_connect(&o, &c[k]) < 0)
			break;
	}
	printf("registered %d of %d\n", k, n);
	if (k < n)
		printf("refused: %s\n", err);
	/* hold them until the time is up (or the script kills us) */
	poll(NULL, 0, (int)(secs * 1000));
	for (int i = 0; i < k; i++)
		pinfer_close(c[i]);
	free(c);
	return 0;
}
