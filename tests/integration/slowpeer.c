/*
 * slowpeer.c — a peer that registers too slowly, for handshake.sh.
 *
 *   --mode trickle   send a valid struct pf_hello one byte every --interval
 *                    seconds (a peer that keeps a per-read timeout from ever
 *                    firing);
 *   --mode silent    connect and send nothing.
 *
 * It prints "connected" once connected, then waits (at most --seconds) for
 * the daemon's answer and prints what happened: "dropped after B bytes: M"
 * (a welcome refusing it with message M, or a plain close), "registered
 * after B bytes", or "still connected after S s".  The script reads these
 * lines; exit status 0 unless something local failed.
 *
 * usage: slowpeer --socket PATH [--mode trickle|silent] [--interval S] [--seconds S]
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shm/proto.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The daemon said something or closed: report it.  Returns 1 when it did. */
static int answered(int s, size_t sent)
{
	struct pf_welcome w;
	ssize_t n = recv(s, &w, sizeof(w), MSG_DONTWAIT | MSG_WAITALL);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	if (n == (ssize_t)sizeof(w) && w.status == PF_WELCOME_OK)
		printf("registered after %zu bytes\n", sent);
	else if (n == (ssize_t)sizeof(w))
		printf("dropped after %zu bytes: %.*s\n", sent, (int)sizeof(w.message), w.message);
	else
		printf("dropped after %zu bytes: (closed)\n", sent);
	return 1;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *mode = "trickle";
	double interval = 1.5, secs = 120;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--socket"))
			path = argv[i + 1];
		else if (!strcmp(argv[i], "--mode"))
			mode = argv[i + 1];
		else if (!strcmp(argv[i], "--interval"))
			interval = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--seconds"))
			secs = atof(argv[i + 1]);
	}
	if (!path || (strcmp(mode, "trickle") && strcmp(mode, "silent"))) {
		fprintf(stderr, "usage: slowpeer --socket PATH [--mode trickle|silent] [--interval S] [--seconds S]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("slowpeer: connect");
		return 1;
	}
	printf("connected\n");
	struct pf_hello h = {
		.magic = PF_PROTO_MAGIC, .version = PF_PROTO_VERSION, .sizeof_sqe = sizeof(struct pf_sqe),
		.sizeof_cqe = sizeof(struct pf_cqe), .sizeof_c2d_hdr = sizeof(struct pf_c2d_hdr),
		.sizeof_d2c_hdr = sizeof(struct pf_d2c_hdr),
	};
	bool trickle = !strcmp(mode, "trickle");
	size_t sent = 0;
	double start = now(), end = start + secs, next = start;
	while (now() < end) {
		if (trickle && sent < sizeof(h) && now() >= next) {
			if (send(s, (char *)&h + sent, 1, MSG_NOSIGNAL) != 1) {
				printf("dropped after %zu bytes: (send failed: %s)\n", sent, strerror(errno));
				return 0;
			}
			sent++;
			next += interval;
		}
		/* wait for the daemon's answer until the next byte is due */
		double until = trickle && sent < sizeof(h) ? next : end;
		int ms = (int)((until - now()) * 1000);
		struct pollfd p = { .fd = s, .events = POLLIN | POLLRDHUP };
		if (poll(&p, 1, ms > 0 ? ms : 0) > 0 && answered(s, sent))
			return 0;
	}
	printf("still connected after %.0f s (%zu bytes sent)\n", now() - start, sent);
	return 0;
}
