/* listen.c — see listen.h. */
#include "tools/common/listen.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pf_parse_listen(const char *prog, const char *example, const char *arg, struct sockaddr_storage *ret,
		    socklen_t *ret_len)
{
	char host[256];
	const char *port;
	if (arg[0] == '[') {
		const char *close = strchr(arg, ']');
		if (!close || close[1] != ':' || (size_t)(close - arg - 1) >= sizeof(host))
			goto bad;
		memcpy(host, arg + 1, (size_t)(close - arg - 1));
		host[close - arg - 1] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(arg, ':');
		if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof(host) ||
		    memchr(arg, ':', (size_t)(colon - arg)))
			goto bad;
		memcpy(host, arg, (size_t)(colon - arg));
		host[colon - arg] = '\0';
		port = colon + 1;
	}
	char *end;
	errno = 0;
	long pn = strtol(port, &end, 10);
	if (!*port || *end || errno || pn < 0 || pn > 65535)
		goto bad;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	int r = getaddrinfo(host, port, &hints, &ai);
	if (r) {
		fprintf(stderr, "%s: --listen %s: %s\n", prog, arg, gai_strerror(r));
		return -EINVAL;
	}
	memcpy(ret, ai->ai_addr, ai->ai_addrlen);
	*ret_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
bad:
	fprintf(stderr, "%s: --listen wants HOST:PORT or [IPV6]:PORT (e.g. %s), not '%s'\n", prog, example, arg);
	return -EINVAL;
}
