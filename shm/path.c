/* path.c — socket path resolution; see path.h. */
#include "shm/path.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

static int valid_instance(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return 0;
	}
	return s[0] != '.';
}

int pf_shm_socket_path(const char *explicit_path, const char *instance, char *buf, size_t len)
{
	struct sockaddr_un sa;
	char name[96];
	int n;
	if (instance && !valid_instance(instance))
		return -EINVAL;
	snprintf(name, sizeof(name), "pinferd%s%s.sock", instance ? "-" : "", instance ? instance : "");
	const char *rd = getenv("RUNTIME_DIRECTORY");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	if (explicit_path && *explicit_path)
		n = snprintf(buf, len, "%s", explicit_path);
	else if (rd && *rd)
		n = snprintf(buf, len, "%s/%s", rd, name);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/run/pinfer/%s", name);
	else if (xdg && *xdg)
		n = snprintf(buf, len, "%s/pinfer/%s", xdg, name);
	else
		n = snprintf(buf, len, "/tmp/pinfer-%u/%s", (unsigned)getuid(), name);
	if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	return 0;
}
