/*
 * main.c — pinfer-server's options, start-up and shutdown.
 *
 *   pinfer-server [--listen HOST:PORT] [--socket PATH | --instance NAME] [--api-key KEY] ...
 *
 * The signals we stop on are taken with sigwait on the main thread; they are
 * blocked before any other thread starts so that no other thread takes them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tools/common/listen.h"
#include "tools/server/server.h"

#define EXIT_START 1
#define EXIT_USAGE 2

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pinfer-server [--listen HOST:PORT] [--socket PATH | --instance NAME] [options]\n"
		"\n"
		"An OpenAI-compatible HTTP server in front of pinferd: POST /v1/chat/completions,\n"
		"POST /v1/completions (streamed as server-sent events or not), POST /tokenize and\n"
		"POST /detokenize (vLLM's shapes), GET /v1/models, GET /health (200 while pinferd\n"
		"answers, else 503) and GET /version.  It is a client of pinferd through\n"
		"libpinfer: start pinferd first (or after; the server keeps trying).  A client\n"
		"that disconnects cancels its request in pinferd.\n"
		"\n"
		"  --listen HOST:PORT      address to serve on (default 127.0.0.1:8000): loopback\n"
		"                          only unless you say otherwise.  IPv6: [::1]:8000.  Port 0\n"
		"                          picks a free port (printed at start).  unix:PATH serves\n"
		"                          on a unix socket (mode 0660) instead.\n"
		"  --socket PATH           pinferd's socket (default: resolved as every client does)\n"
		"  --instance NAME         the pinferd instance (pinferd --instance NAME)\n"
		"  --served-model-name N   the model id clients must send (default: pinferd's model name)\n"
		"  --route NAME=TARGET     serve model id NAME from the pinferd instance TARGET\n"
		"                          (pinferd --instance TARGET), or from the socket TARGET when\n"
		"                          it contains a '/'.  Repeatable (up to 16): one server in\n"
		"                          front of several models; /v1/models lists them all, an\n"
		"                          unknown name is 404.  Not with --socket, --instance or\n"
		"                          --served-model-name.\n"
		"  --api-key KEY           require 'Authorization: Bearer KEY' on /v1/, /tokenize\n"
		"                          and /detokenize (also\n"
		"                          $PINFER_API_KEY); compared in constant time.  A key on the\n"
		"                          command line is visible in ps: prefer --api-key-file.\n"
		"  --api-key-file FILE     the key is FILE's first line\n"
		"  --max-body BYTES        largest request body (default 1048576); larger: 413\n"
		"  --max-requests N        generation requests in flight (default 256); more: 429\n"
		"                          with Retry-After.  pinferd's --max-inflight limits too.\n"
		"  --max-connections N     open HTTP connections (default 4096; the open-file limit\n"
		"                          is raised to fit)\n"
		"  --timeout SECONDS       idle connection and header timeout (default 60); a\n"
		"                          connection waiting for tokens never times out\n"
		"  --default-max-tokens N  max_tokens of a chat request that sets none (default 512)\n"
		"  --resume-wait SECONDS   how long open streams wait for a draining pinferd to come\n"
		"                          back (pinfer_reconnect) before they end with an error (30)\n"
		"  --metrics-prefix P      names of the daemon's series on GET /metrics: pinfer\n"
		"                          (pinfer:num_requests_running ...; the default, as\n"
		"                          pinfer-exporter) or vllm (vllm:num_requests_waiting,\n"
		"                          vllm:kv_cache_usage_perc ...: dashboards and autoscalers\n"
		"                          written for vLLM work unchanged).  The server's own\n"
		"                          series are pinfer_server:http_requests_total{endpoint,\n"
		"                          status}, pinfer_server:open_streams and\n"
		"                          pinfer_server:request_latency_seconds.\n"
		"  --log-level LEVEL       error, info (default) or debug; only debug logs prompt text\n"
		"  --help                  this text\n"
		"\n"
		"Parameters pinfer cannot honour are refused with 400 naming them: tools,\n"
		"tool_choice (other than \"none\"), functions, response_format (other than text),\n"
		"logit_bias, suffix, best_of other than n, echo with logprobs, non-text content\n"
		"parts, unknown fields.\n");
}

/* --listen unix:PATH: a stream socket at PATH (a stale socket file there is
 * replaced; any other file is refused), mode 0660 so that a group can be
 * given access.  Returns the listening descriptor or -1 (reason printed). */
static int listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	if (!*path || strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "pinfer-server: --listen unix:PATH wants a path of 1 to %zu bytes\n", sizeof(sa.sun_path) - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "pinfer-server: --listen unix:%s: exists and is not a socket\n", path);
			return -1;
		}
		unlink(path);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 || listen(fd, 511) < 0) {
		fprintf(stderr, "pinfer-server: --listen unix:%s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int num_arg(const char *name, const char *v, long long lo, long long hi, long long *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (!*v || *end || errno || x < lo || x > hi) {
		fprintf(stderr, "pinfer-server: --%s wants an integer in [%lld, %lld], not '%s'\n", name, lo, hi, v);
		return -EINVAL;
	}
	*out = x;
	return 0;
}

static char *read_key_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "pinfer-server: --api-key-file %s: %s\n", path, strerror(errno));
		return NULL;
	}
	char line[1024];
	char *k = NULL;
	if (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0])
			k = strdup(line);
	}
	fclose(f);
	if (!k)
		fprintf(stderr, "pinfer-server: --api-key-file %s: the first line is empty\n", path);
	return k;
}

int main(int argc, char **argv)
{
	enum {
		O_LISTEN = 256, O_SOCKET, O_INSTANCE, O_NAME, O_KEY, O_KEYFILE, O_BODY, O_REQS, O_CONNS, O_TIMEOUT,
		O_DEFMAX, O_RESUME, O_LOG, O_ROUTE, O_PREFIX,
	};
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "socket", required_argument, NULL, O_SOCKET },
		{ "instance", required_argument, NULL, O_INSTANCE },
		{ "served-model-name", required_argument, NULL, O_NAME },
		{ "api-key", required_argument, NULL, O_KEY },
		{ "api-key-file", required_argument, NULL, O_KEYFILE },
		{ "max-body", required_argument, NULL, O_BODY },
		{ "max-requests", required_argument, NULL, O_REQS },
		{ "max-connections", required_argument, NULL, O_CONNS },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "default-max-tokens", required_argument, NULL, O_DEFMAX },
		{ "resume-wait", required_argument, NULL, O_RESUME },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "route", required_argument, NULL, O_ROUTE },
		{ "metrics-prefix", required_argument, NULL, O_PREFIX },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct srv_config cfg;
	static struct backend b[SRV_MAX_ROUTES];
	static struct srv_metrics metrics;
	const char *prefix = "pinfer";
	int nb = 0;
	long long x;
	int c;

	cfg.listen = "127.0.0.1:8000";
	pinfer_connect_opts_init(&cfg.conn);
	cfg.max_body = 1 << 20;
	cfg.max_requests = 256;
	cfg.max_connections = 4096;
	cfg.idle_timeout_s = 60;
	cfg.default_max_tokens = 512;
	cfg.resume_wait_s = 30;
	cfg.log_level = 1;
	const char *env_key = getenv("PINFER_API_KEY");
	if (env_key && env_key[0])
		cfg.api_key = strdup(env_key);

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN: cfg.listen = optarg; break;
		case O_SOCKET: cfg.conn.socket_path = optarg; break;
		case O_INSTANCE: cfg.conn.instance = optarg; break;
		case O_NAME: cfg.served_name = optarg; break;
		case O_KEY:
			free(cfg.api_key);
			cfg.api_key = strdup(optarg);
			break;
		case O_KEYFILE:
			free(cfg.api_key);
			if (!(cfg.api_key = read_key_file(optarg)))
				return EXIT_USAGE;
			break;
		case O_BODY:
			if (num_arg("max-body", optarg, 1024, 1LL << 30, &x) < 0)
				return EXIT_USAGE;
			cfg.max_body = (size_t)x;
			break;
		case O_REQS:
			if (num_arg("max-requests", optarg, 1, 1 << 20, &x) < 0)
				return EXIT_USAGE;
			cfg.max_requests = (unsigned)x;
			break;
		case O_CONNS:
			if (num_arg("max-connections", optarg, 1, 1 << 20, &x) < 0)
				return EXIT_USAGE;
			cfg.max_connections = (unsigned)x;
			break;
		case O_TIMEOUT:
			if (num_arg("timeout", optarg, 1, 86400, &x) < 0)
				return EXIT_USAGE;
			cfg.idle_timeout_s = (unsigned)x;
			break;
		case O_DEFMAX:
			if (num_arg("default-max-tokens", optarg, 1, INT32_MAX, &x) < 0)
				return EXIT_USAGE;
			cfg.default_max_tokens = (int32_t)x;
			break;
		case O_RESUME:
			if (num_arg("resume-wait", optarg, 0, 86400, &x) < 0)
				return EXIT_USAGE;
			cfg.resume_wait_s = (double)x;
			break;
		case O_LOG:
			if (!strcmp(optarg, "error"))
				cfg.log_level = 0;
			else if (!strcmp(optarg, "info"))
				cfg.log_level = 1;
			else if (!strcmp(optarg, "debug"))
				cfg.log_level = 2;
			else {
				fprintf(stderr, "pinfer-server: --log-level wants error, info or debug, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case O_ROUTE: {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg || !eq[1] || (size_t)(eq - optarg) >= 128) {
				fprintf(stderr, "pinfer-server: --route wants NAME=INSTANCE or NAME=/path/to/pinferd.sock, not '%s'\n",
					optarg);
				return EXIT_USAGE;
			}
			if (cfg.n_routes == SRV_MAX_ROUTES) {
				fprintf(stderr, "pinfer-server: at most %d --route\n", SRV_MAX_ROUTES);
				return EXIT_USAGE;
			}
			*eq = '\0';
			for (int i = 0; i < cfg.n_routes; i++)
				if (strcmp(cfg.route[i].name, optarg) == 0) {
					fprintf(stderr, "pinfer-server: --route %s given twice\n", optarg);
					return EXIT_USAGE;
				}
			cfg.route[cfg.n_routes].name = optarg;
			cfg.route[cfg.n_routes++].target = eq + 1;
			break;
		}
		case O_PREFIX:
			if (strcmp(optarg, "pinfer") && strcmp(optarg, "vllm")) {
				fprintf(stderr, "pinfer-server: --metrics-prefix wants pinfer or vllm, not '%s'\n", optarg);
				return EXIT_USAGE;
			}
			prefix = optarg;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pinfer-server: unexpected argument '%s' (see --help)\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (cfg.conn.socket_path && cfg.conn.instance) {
		fprintf(stderr, "pinfer-server: give --socket or --instance, not both\n");
		return EXIT_USAGE;
	}
	if (cfg.n_routes && (cfg.conn.socket_path || cfg.conn.instance || cfg.served_name)) {
		fprintf(stderr, "pinfer-server: --route names the daemons: not with --socket, --instance or --served-model-name\n");
		return EXIT_USAGE;
	}
	struct sockaddr_storage sa = { 0 };
	socklen_t sa_len = 0;
	bool ipv6 = false;
	const char *unix_path = strncmp(cfg.listen, "unix:", 5) == 0 ? cfg.listen + 5 : NULL;
	int listen_fd = -1;
	if (unix_path) {
		if ((listen_fd = listen_unix(unix_path)) < 0)
			return EXIT_START;
	} else if (pf_parse_listen("pinfer-server", "127.0.0.1:8000", cfg.listen, &sa, &sa_len) < 0) {
		return EXIT_USAGE;
	}
	ipv6 = sa.ss_family == AF_INET6;

	/* every connection is a descriptor: make room for --max-connections */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < cfg.max_connections + 64) {
		rl.rlim_cur = rl.rlim_max < cfg.max_connections + 64 ? rl.rlim_max : cfg.max_connections + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (cfg.n_routes == 0) {
		if (backend_start(&b[nb++], &cfg, &cfg.conn, cfg.served_name) < 0) {
			fprintf(stderr, "pinfer-server: cannot start: %s\n", strerror(errno));
			return EXIT_START;
		}
	}
	for (int i = 0; i < cfg.n_routes; i++) {
		struct pinfer_connect_opts o = cfg.conn;
		if (strchr(cfg.route[i].target, '/'))
			o.socket_path = cfg.route[i].target;
		else
			o.instance = cfg.route[i].target;
		if (backend_start(&b[nb++], &cfg, &o, cfg.route[i].name) < 0) {
			fprintf(stderr, "pinfer-server: cannot start: %s\n", strerror(errno));
			return EXIT_START;
		}
	}
	if (srv_metrics_init(&metrics, nb, prefix) < 0) {
		fprintf(stderr, "pinfer-server: out of memory\n");
		return EXIT_START;
	}
	struct MHD_Daemon *d = http_start(b, nb, &cfg, &metrics, (const struct sockaddr *)&sa, ipv6, listen_fd);
	if (!d) {
		fprintf(stderr, "pinfer-server: cannot listen on %s (in use, or not an address of this host?)\n",
			cfg.listen);
		for (int i = 0; i < nb; i++)
			backend_stop(&b[i]);
		return EXIT_START;
	}
	if (unix_path) {
		fprintf(stderr, "pinfer-server: listening on unix:%s%s\n", unix_path,
			cfg.api_key ? " (API key required)" : "");
	} else {
		unsigned port = 0;
		const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
		if (di)
			port = di->port;
		char host[INET6_ADDRSTRLEN] = "";
		inet_ntop(sa.ss_family,
			  ipv6 ? (void *)&((struct sockaddr_in6 *)&sa)->sin6_addr
			       : (void *)&((struct sockaddr_in *)&sa)->sin_addr,
			  host, sizeof(host));
		fprintf(stderr, "pinfer-server: listening on http://%s%s%s:%u/v1%s\n", ipv6 ? "[" : "", host,
			ipv6 ? "]" : "", port, cfg.api_key ? " (API key required)" : "");
	}

	int sig;
	while (sigwait(&stop, &sig) != 0)
		;
	if (cfg.log_level >= 1)
		fprintf(stderr, "pinfer-server: stopping (%s)\n", strsignal(sig));
	MHD_stop_daemon(d);
	for (int i = 0; i < nb; i++)
		backend_stop(&b[i]);
	if (unix_path)
		unlink(unix_path);
	free(cfg.api_key);
	return 0;
}
