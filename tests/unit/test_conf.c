/*
 * test_conf.c — pinferd's configuration file syntax (runtime/daemon/conf.h):
 * comments only where '#' starts a line or follows a blank, quoted values
 * and their escapes, the errors; reading files (line numbers, NUL bytes,
 * long lines); the drop-in directory's choice and order of files; and the
 * whole chain through pf_daemon_config_parse (main file, drop-ins, flags).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "runtime/daemon/conf.h"
#include "runtime/daemon/daemon.h"

struct line_case {
	const char *in;
	int rc;
	const char *key, *value; /* value NULL: none expected */
};

static const struct line_case cases[] = {
	{ "", 0, NULL, NULL },
	{ "   \t ", 0, NULL, NULL },
	{ "\r\n", 0, NULL, NULL },
	{ "# a comment", 0, NULL, NULL },
	{ "   # a comment = with an equals sign", 0, NULL, NULL },
	{ "model = /m/model#1.gguf", 1, "model", "/m/model#1.gguf" },
	{ "model=/m/model#1.gguf\n", 1, "model", "/m/model#1.gguf" },
	{ "url = http://host/#frag", 1, "url", "http://host/#frag" },
	{ "threads = 4   # four", 1, "threads", "4" },
	{ "threads = 4\t# four", 1, "threads", "4" },
	{ "  threads\t=\t4  \r\n", 1, "threads", "4" },
	{ "no-prefix-caching", 1, "no-prefix-caching", NULL },
	{ "no-prefix-caching   # off", 1, "no-prefix-caching", NULL },
	{ "no-prefix-caching # x = y", 1, "no-prefix-caching", NULL },
	{ "socket = /tmp/a b", 1, "socket", "/tmp/a b" },
	{ "socket = \"/tmp/a b # c\"", 1, "socket", "/tmp/a b # c" },
	{ "x = \"  padded  \"   # comment", 1, "x", "  padded  " },
	{ "x = \"a\\\"b\\\\c\\nd\\te\"", 1, "x", "a\"b\\c\nd\te" },
	{ "x = \"\"", 1, "x", "" },
	{ "x = \"#\"#", 1, "x", "#" },
	{ "x = a\"b\"", 1, "x", "a\"b\"" },
	{ "x =", 1, "x", "" },
	{ "x = # nothing but a comment", 1, "x", "" },
	{ "x =#y", 1, "x", "#y" },
	{ "x = a = b", 1, "x", "a = b" },
	{ "x = \"abc", -EINVAL, NULL, NULL },
	{ "x = \"abc\\\"", -EINVAL, NULL, NULL },
	{ "x = \"a\\qb\"", -EINVAL, NULL, NULL },
	{ "x = \"abc\" junk", -EINVAL, NULL, NULL },
	{ " = value", -EINVAL, NULL, NULL },
	{ "=", -EINVAL, NULL, NULL },
};

static void test_lines(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct line_case *c = &cases[i];
		char buf[256];
		snprintf(buf, sizeof(buf), "%s", c->in);
		char *key = (char *)"?", *val = (char *)"?";
		const char *err = NULL;
		int rc = pf_conf_parse_line(buf, &key, &val, &err);
		if (rc != c->rc)
			fail_msg("line '%s': rc %d, want %d (%s)", c->in, rc, c->rc, err ? err : "");
		if (rc < 0) {
			assert_non_null(err);
			continue;
		}
		if (rc == 0)
			continue;
		if (strcmp(key, c->key))
			fail_msg("line '%s': key '%s', want '%s'", c->in, key, c->key);
		if (!c->value && val)
			fail_msg("line '%s': value '%s', want none", c->in, val);
		if (c->value && (!val || strcmp(val, c->value)))
			fail_msg("line '%s': value '%s', want '%s'", c->in, val ? val : "(none)", c->value);
	}
}

/* ---- files ---------------------------------------------------------------------------- */

static char dir[64];

static int setup_dir(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/pinfer-conf-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
}

#define WRITE(name, text) write_file(name, text, sizeof(text) - 1)

struct seen {
	int n;
	char keys[8][32], vals[8][64];
	int lines[8];
};

static int collect(void *ctx, const char *path, int lineno, const char *key, const char *value)
{
	struct seen *s = ctx;
	(void)path;
	if (s->n == 8)
		return -E2BIG;
	snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
	snprintf(s->vals[s->n], sizeof(s->vals[0]), "%s", value ? value : "(none)");
	s->lines[s->n++] = lineno;
	return 0;
}

static void test_read_file(void **state)
{
	(void)state;
	char path[256];
	struct seen s = { 0 };
	WRITE("a.conf", "# head\n\nmodel = /m/x#1.gguf  # the model\r\nno-prefix-caching\nthreads = \"2\"");
	snprintf(path, sizeof(path), "%s/a.conf", dir);
	assert_int_equal(pf_conf_read_file(path, collect, &s), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.keys[0], "model");
	assert_string_equal(s.vals[0], "/m/x#1.gguf");
	assert_int_equal(s.lines[0], 3);
	assert_string_equal(s.vals[1], "(none)");
	assert_string_equal(s.vals[2], "2"); /* the last line needs no newline */
	assert_int_equal(s.lines[2], 5);

	/* a syntax error stops the file */
	WRITE("bad.conf", "threads = 2\nx = \"open\nthreads = 3\n");
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	memset(&s, 0, sizeof(s));
	assert_int_equal(pf_conf_read_file(path, collect, &s), -EINVAL);
	assert_int_equal(s.n, 1);

	/* a NUL byte: not silently a shorter line */
	write_file("nul.conf", "model = /m/a\0b\n", 15);
	snprintf(path, sizeof(path), "%s/nul.conf", dir);
	assert_int_equal(pf_conf_read_file(path, collect, &s), -EINVAL);

	/* a line over the limit: not silently split in two */
	size_t big = PF_CONF_LINE_MAX + 100;
	char *text = malloc(big + 1);
	assert_non_null(text);
	memcpy(text, "model = ", 8);
	memset(text + 8, 'a', big - 9);
	text[big - 1] = '\n';
	write_file("long.conf", text, big);
	free(text);
	snprintf(path, sizeof(path), "%s/long.conf", dir);
	memset(&s, 0, sizeof(s));
	assert_int_equal(pf_conf_read_file(path, collect, &s), -EINVAL);
	assert_int_equal(s.n, 0);

	/* missing: -ENOENT, for the caller to judge */
	snprintf(path, sizeof(path), "%s/none.conf", dir);
	assert_int_equal(pf_conf_read_file(path, collect, &s), -ENOENT);

	/* the callback's verdict is returned */
	WRITE("many.conf", "a=1\nb=2\nc=3\nd=4\ne=5\nf=6\ng=7\nh=8\ni=9\n");
	snprintf(path, sizeof(path), "%s/many.conf", dir);
	memset(&s, 0, sizeof(s));
	assert_int_equal(pf_conf_read_file(path, collect, &s), -E2BIG);
}

static void test_dropins(void **state)
{
	(void)state;
	char path[256], sub[300];
	snprintf(path, sizeof(path), "%s/pinferd.conf", dir);
	char **list;
	int n;
	/* no directory: no drop-ins */
	assert_int_equal(pf_conf_dropins(path, &list, &n), 0);
	assert_int_equal(n, 0);
	snprintf(sub, sizeof(sub), "%s.d", path);
	assert_int_equal(mkdir(sub, 0755), 0);
	WRITE("pinferd.conf.d/50-b.conf", "threads = 5\n");
	WRITE("pinferd.conf.d/10-a.conf", "threads = 1\n");
	WRITE("pinferd.conf.d/9-c.conf", "threads = 9\n"); /* byte order: "10" < "50" < "9" */
	WRITE("pinferd.conf.d/README", "not a config\n");
	WRITE("pinferd.conf.d/20-x.conf~", "editor backup\n");
	WRITE("pinferd.conf.d/.hidden.conf", "hidden\n");
	WRITE("pinferd.conf.d/.conf", "no name\n");
	snprintf(sub, sizeof(sub), "%s.d/30-dir.conf", path);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_int_equal(pf_conf_dropins(path, &list, &n), 0);
	assert_int_equal(n, 3);
	assert_non_null(strstr(list[0], "/pinferd.conf.d/10-a.conf"));
	assert_non_null(strstr(list[1], "/pinferd.conf.d/50-b.conf"));
	assert_non_null(strstr(list[2], "/pinferd.conf.d/9-c.conf"));
	pf_conf_free_list(list, n);
}

/* The whole chain: defaults, main file, drop-ins in order, flags last. */
static void test_config_parse(void **state)
{
	(void)state;
	char path[256], arg[300];
	snprintf(path, sizeof(path), "%s/pinferd.conf", dir);
	WRITE("pinferd.conf", "model = /m/model#1.gguf   # the model\n"
			      "threads = 2 # two\n"
			      "socket = \"/tmp/a dir/# p.sock\"\n");
	snprintf(arg, sizeof(arg), "%s.d", path);
	assert_int_equal(mkdir(arg, 0755), 0);
	WRITE("pinferd.conf.d/10-a.conf", "threads = 3\nmax-clients = 10\n");
	WRITE("pinferd.conf.d/20-b.conf", "threads = 4\n");
	snprintf(arg, sizeof(arg), "--config=%s", path);
	struct pf_daemon_config *c = malloc(sizeof(*c));
	assert_non_null(c);

	char *argv1[] = { "pinferd", arg, NULL };
	assert_int_equal(pf_daemon_config_parse(c, 2, argv1), 0);
	assert_string_equal(c->model, "/m/model#1.gguf");
	assert_string_equal(c->socket_path, "/tmp/a dir/# p.sock");
	assert_int_equal(c->threads, 4);     /* the last drop-in wins */
	assert_int_equal(c->max_clients, 10);

	char *argv2[] = { "pinferd", arg, "--threads", "7", NULL };
	assert_int_equal(pf_daemon_config_parse(c, 4, argv2), 0);
	assert_int_equal(c->threads, 7);     /* flags win over every file */

	/* an error in a drop-in is an error of the whole configuration */
	WRITE("pinferd.conf.d/30-bad.conf", "threads = \"7\n");
	assert_int_equal(pf_daemon_config_parse(c, 2, argv1), -EINVAL);
	WRITE("pinferd.conf.d/30-bad.conf", "thread = 7\n");
	assert_int_equal(pf_daemon_config_parse(c, 2, argv1), -EINVAL);

	/* an explicit --config that does not exist is an error; its
	 * drop-ins alone are not enough */
	snprintf(arg, sizeof(arg), "--config=%s/absent.conf", dir);
	assert_int_equal(pf_daemon_config_parse(c, 2, argv1), -ENOENT);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test_setup_teardown(test_read_file, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_dropins, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_config_parse, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
