/*
 * pinfer-bench-ipc — the cost of the shared-memory path alone.
 *
 * Run against `pinferd --echo-backend`, which answers every request at once
 * without a model, so what is measured is libpinfer + rings + wake-ups +
 * the daemon's poll/post loop:
 *   - round trip submit → first completion, p50/p99:
 *       spinning   back to back, the client polling (pinfer_next, timeout 0):
 *                  the daemon never gets to sleep — the path's floor;
 *       idle       a pause between requests, so the daemon is asleep and the
 *                  client's kick has to wake it (futex), client spinning;
 *       sleeping   the same pause, and the client sleeps at once
 *                  (PINFER_SPINS=0): both wake-ups, the daemon's and the
 *                  client's (io_uring FUTEX_WAIT or futex(2));
 *   - completions per second with 1 and with N clients (threads, one
 *     connection each), each keeping its quota of requests in flight.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/pinfer.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static struct pinfer_connect_opts opts;

static int connect_or_die(struct pinfer **c)
{
	int r = pinfer_connect(&opts, c);
	if (r) {
		fprintf(stderr, "pinfer-bench-ipc: cannot connect: %s\n", strerror(-r));
		return r;
	}
	return 0;
}

/* Round trips of single-token requests; spin: poll without sleeping;
 * gap_us: pause before each request (the daemon goes to sleep). */
static int round_trips(int n, bool spin, int gap_us, double *p50, double *p99)
{
	struct pinfer *c;
	struct pinfer_params p;
	struct pinfer_event ev;
	double *lat = malloc(sizeof(double) * (size_t)n);
	int r = connect_or_die(&c);
	if (r || !lat)
		return r ? r : -ENOMEM;
	pinfer_params_init(&p);
	p.max_tokens = 1;
	for (int i = 0; i < n + n / 10; i++) {
		uint64_t tag;
		if (gap_us) {
			struct timespec gap = { .tv_nsec = gap_us * 1000L };
			nanosleep(&gap, NULL);
		}
		double t0 = now_s();
		r = pinfer_submit_text(c, "x", 1, &p, &tag);
		if (r)
			break;
		bool first = true;
		for (;;) {
			r = pinfer_next(c, &ev, spin ? 0 : -1);
			if (r == -EAGAIN)
				continue;
			if (r)
				break;
			if (first && i >= n / 10)
				lat[i - n / 10] = now_s() - t0; /* first tenth warms up */
			first = false;
			if (ev.last)
				break;
		}
		if (r)
			break;
	}
	pinfer_close(c);
	if (!r) {
		qsort(lat, (size_t)n, sizeof(double), cmp_d);
		*p50 = lat[n / 2];
		*p99 = lat[n * 99 / 100];
	}
	free(lat);
	return r;
}

struct tp_arg {
	double seconds;
	uint64_t completions;
	int err;
};

static void *throughput_client(void *p)
{
	struct tp_arg *a = p;
	struct pinfer *c;
	struct pinfer_params pp;
	struct pinfer_event ev;
	if ((a->err = connect_or_die(&c)))
		return NULL;
	pinfer_params_init(&pp);
	pp.max_tokens = 64;
	uint32_t window = pinfer_max_inflight(c) ? pinfer_max_inflight(c) : 8;
	if (window > 8)
		window = 8;
	double end = now_s() + a->seconds;
	while (now_s() < end) {
		while (pinfer_inflight(c) < window) {
			uint64_t tag;
			int r = pinfer_submit_text(c, "hello", 5, &pp, &tag);
			if (r == -EAGAIN)
				break;
			if (r) {
				a->err = r;
				goto out;
			}
		}
		int r = pinfer_next(c, &ev, 100);
		if (r == 0 && ev.kind == PINFER_EVENT_TOKEN)
			a->completions++;
		else if (r && r != -ETIMEDOUT && r != -EAGAIN) {
			a->err = r;
			break;
		}
	}
out:
	pinfer_close(c);
	return NULL;
}

static double throughput(int n_clients, double seconds)
{
	pthread_t *th = calloc((size_t)n_clients, sizeof(*th));
	struct tp_arg *args = calloc((size_t)n_clients, sizeof(*args));
	double t0 = now_s();
	for (int i = 0; i < n_clients; i++) {
		args[i].seconds = seconds;
		pthread_create(&th[i], NULL, throughput_client, &args[i]);
	}
	uint64_t total = 0;
	int err = 0;
	for (int i = 0; i < n_clients; i++) {
		pthread_join(th[i], NULL);
		total += args[i].completions;
		err |= args[i].err;
	}
	double dt = now_s() - t0;
	free(th);
	free(args);
	return err ? -1 : (double)total / dt;
}

int main(int argc, char **argv)
{
	/* -n and -t are completions and threads in the pinfer tools: long only here */
	enum { O_ITER = 256, O_SECONDS };
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' }, { "instance", required_argument, NULL, 'i' },
		{ "iterations", required_argument, NULL, O_ITER }, { "clients", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, O_SECONDS }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	int n = 20000, clients = 32, ch;
	double secs = 3;
	pinfer_connect_opts_init(&opts);
	while ((ch = getopt_long(argc, argv, "s:i:c:h", lo, NULL)) != -1) {
		switch (ch) {
		case 's': opts.socket_path = optarg; break;
		case 'i': opts.instance = optarg; break;
		case O_ITER: n = atoi(optarg); break;
		case 'c': clients = atoi(optarg); break;
		case O_SECONDS: secs = atof(optarg); break;
		case 'h':
			printf("usage: pinfer-bench-ipc [--socket PATH | --instance NAME] [--iterations N] [-c CLIENTS] [--seconds S]\n"
			       "\nMeasures the IPC path against `pinferd --echo-backend`: round-trip latency\n"
			       "(back to back with a spinning client; with the daemon idle between requests and\n"
			       "the client spinning, then sleeping at once) and completions/s with 1 and CLIENTS\n"
			       "clients.\n");
			return 0;
		default: return 2;
		}
	}
	if (n < 100 || clients < 1 || secs <= 0) {
		fprintf(stderr, "pinfer-bench-ipc: need --iterations >= 100, -c >= 1, --seconds > 0\n");
		return 2;
	}
	double p50, p99;
	if (round_trips(n, true, 0, &p50, &p99))
		return 1;
	printf("ipc\tround_trip_spinning_us\tp50 %.2f\tp99 %.2f\t(back to back)\n", p50 * 1e6, p99 * 1e6);
	if (round_trips(n / 10, true, 500, &p50, &p99))
		return 1;
	printf("ipc\tround_trip_idle_daemon_us\tp50 %.2f\tp99 %.2f\t(daemon asleep, client spinning)\n", p50 * 1e6,
	       p99 * 1e6);
	/* a sleeping client: no spinning at all before it sleeps */
	setenv("PINFER_SPINS", "0", 1);
	int rs = round_trips(n / 10, false, 500, &p50, &p99);
	unsetenv("PINFER_SPINS");
	if (rs)
		return 1;
	printf("ipc\tround_trip_sleeping_us\tp50 %.2f\tp99 %.2f\t(daemon asleep, client sleeping)\n", p50 * 1e6,
	       p99 * 1e6);
	double t1 = throughput(1, secs), tn = throughput(clients, secs);
	printf("ipc\tcompletions_per_s\t1 client %.0f\t%d clients %.0f\n", t1, clients, tn);
	return t1 < 0 || tn < 0;
}
