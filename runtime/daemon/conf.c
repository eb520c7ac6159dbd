/*
 * conf.c — configuration file syntax and the drop-in directory (conf.h).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/daemon/conf.h"

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/* '#' at p starts a comment: it follows a blank (p is never a line's first
 * byte here, so p[-1] exists) */
static bool comment_at(const char *p)
{
	return *p == '#' && blank(p[-1]);
}

#define FAIL(msg) do { *ret_err = (msg); return -EINVAL; } while (0)

int pf_conf_parse_line(char *line, char **ret_key, char **ret_value, const char **ret_err)
{
	*ret_key = *ret_value = NULL;
	*ret_err = NULL;
	size_t n = strlen(line);
	if (n && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n && line[n - 1] == '\r')
		line[--n] = '\0';
	char *p = line;
	while (blank(*p))
		p++;
	if (!*p || *p == '#')
		return 0;
	/* the name: up to '=' or a comment */
	char *key = p;
	while (*p && *p != '=' && !comment_at(p))
		p++;
	bool has_value = *p == '=';
	char *key_end = p;
	while (key_end > key && blank(key_end[-1]))
		key_end--;
	if (key_end == key)
		FAIL("a setting needs a name before '='");
	if (has_value)
		p++;
	*key_end = '\0';
	*ret_key = key;
	if (!has_value)
		return 1;
	while (blank(*p))
		p++;
	char *val = p;
	if (*p == '"') {
		/* decoded in place: the text never grows */
		char *out = val;
		for (p++;; p++) {
			char c = *p;
			if (!c)
				FAIL("unterminated quoted value (a '\"' is missing)");
			if (c == '"')
				break;
			if (c == '\\') {
				switch (*++p) {
				case '"': c = '"'; break;
				case '\\': c = '\\'; break;
				case 'n': c = '\n'; break;
				case 't': c = '\t'; break;
				default: FAIL("unknown escape in a quoted value (known: \\\" \\\\ \\n \\t)");
				}
			}
			*out++ = c;
		}
		for (p++; blank(*p); p++)
			;
		if (*p && *p != '#')
			FAIL("only a comment may follow a quoted value");
		*out = '\0';
	} else {
		while (*p && !comment_at(p))
			p++;
		while (p > val && blank(p[-1]))
			p--;
		*p = '\0';
	}
	*ret_value = val;
	return 1;
}

int pf_conf_read_file(const char *path, pf_conf_setting_fn fn, void *ctx)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		if (e != ENOENT)
			fprintf(stderr, "pinferd: cannot read config file %s: %s\n", path, strerror(e));
		return -e;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0, r = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		const char *err = NULL;
		char *key, *val;
		if (len > PF_CONF_LINE_MAX)
			err = "line too long";
		else if (strlen(line) != (size_t)len)
			err = "a NUL byte in the line (not a text file?)";
		int k = err ? -EINVAL : pf_conf_parse_line(line, &key, &val, &err);
		if (k < 0) {
			fprintf(stderr, "pinferd: %s:%d: %s\n", path, lineno, err);
			r = -EINVAL;
			break;
		}
		if (k > 0 && (r = fn(ctx, path, lineno, key, val)) != 0)
			break;
	}
	if (!r && ferror(f)) {
		r = -EIO;
		fprintf(stderr, "pinferd: cannot read config file %s: %s\n", path, strerror(EIO));
	}
	free(line);
	fclose(f);
	return r;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void pf_conf_free_list(char **paths, int n)
{
	for (int i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
}

int pf_conf_dropins(const char *main_path, char ***ret_paths, int *ret_n)
{
	*ret_paths = NULL;
	*ret_n = 0;
	char dir[4096];
	if ((size_t)snprintf(dir, sizeof(dir), "%s.d", main_path) >= sizeof(dir))
		return -ENAMETOOLONG;
	DIR *dp = opendir(dir);
	if (!dp)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
	char **names = NULL;
	int n = 0, cap = 0, r = 0;
	struct dirent *de;
	while ((de = readdir(dp))) {
		size_t len = strlen(de->d_name);
		/* "*.conf", not hidden ("." files are editors' and tools') */
		if (de->d_name[0] == '.' || len <= 5 || strcmp(de->d_name + len - 5, ".conf"))
			continue;
		char *full = malloc(strlen(dir) + 1 + len + 1);
		if (!full) {
			r = -ENOMEM;
			break;
		}
		sprintf(full, "%s/%s", dir, de->d_name);
		struct stat st;
		if (stat(full, &st) < 0 || !S_ISREG(st.st_mode)) {
			free(full);
			continue;
		}
		if (n == cap) {
			int nc = cap ? cap * 2 : 8;
			char **nn = realloc(names, sizeof(*names) * (size_t)nc);
			if (!nn) {
				free(full);
				r = -ENOMEM;
				break;
			}
			names = nn;
			cap = nc;
		}
		names[n++] = full;
	}
	closedir(dp);
	if (r) {
		pf_conf_free_list(names, n);
		return r;
	}
	/* the whole paths share the directory, so their order is the names' */
	if (n > 1)
		qsort(names, (size_t)n, sizeof(*names), by_name);
	*ret_paths = names;
	*ret_n = n;
	return 0;
}
