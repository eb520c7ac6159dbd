/*
 * listen.h — the --listen address of the HTTP tools (pinfer-exporter,
 * pinfer-server), parsed once: "HOST:PORT", or "[IPV6]:PORT".
 */
#ifndef PF_TOOLS_COMMON_LISTEN_H
#define PF_TOOLS_COMMON_LISTEN_H

#include <sys/socket.h>

/* Resolve `arg` (numeric port, any host getaddrinfo knows) into *ret and its
 * length.  example: what the usage message shows ("127.0.0.1:8000").
 * Returns 0, or -EINVAL with "PROG: --listen ..." printed to stderr. */
int pf_parse_listen(const char *prog, const char *example, const char *arg, struct sockaddr_storage *ret,
		    socklen_t *ret_len);

#endif
