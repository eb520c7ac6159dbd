/*
 * path.h — where a daemon's registration socket lives.
 *
 * Both pinferd and clients resolve it the same way, first match wins:
 *   1. an explicit path (--socket);
 *   2. $RUNTIME_DIRECTORY/pinferd[-INSTANCE].sock (set by systemd);
 *   3. /run/pinfer/pinferd[-INSTANCE].sock when running as root;
 *   4. $XDG_RUNTIME_DIR/pinfer/pinferd[-INSTANCE].sock;
 *   5. /tmp/pinfer-UID/pinferd[-INSTANCE].sock as a last resort.
 * INSTANCE (--instance NAME) lets several daemons coexist; names are limited
 * to [A-Za-z0-9._-], 1..64 characters.
 */
#ifndef PF_SHM_PATH_H
#define PF_SHM_PATH_H

#include <stddef.h>

/* Resolve into buf.  Returns 0, -EINVAL for a bad instance name, or
 * -ENAMETOOLONG when the path does not fit a sockaddr_un. */
int pf_shm_socket_path(const char *explicit_path, const char *instance, char *buf, size_t len);

#endif
