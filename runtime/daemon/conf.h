/*
 * conf.h — the syntax of pinferd's configuration files, and the drop-in
 * directory.  Knows nothing of the options themselves (daemon_config.c).
 *
 * A file is lines (LF or CRLF) of
 *
 *   # a comment line: '#' is the first character that is not a blank
 *   name = value
 *   name                     (an option without a value, e.g. no-prefix-caching)
 *
 * Blanks (space, tab) around names and values are dropped.  A comment may
 * also end a line: '#' starts one where it follows a blank and is not
 * inside quotes — so `model = /m/model#1.gguf` is that whole path, and
 * `threads = 4   # four` is 4.  A value may be double-quoted, to keep blanks
 * at its ends, a " #" or other special characters; inside quotes \" is a
 * quote, \\ a backslash, \n a newline, \t a tab, and any other escape is an
 * error; nothing but blanks and a comment may follow the closing quote.  A
 * quote anywhere else in a value is an ordinary character.  Lines are at
 * most PF_CONF_LINE_MAX bytes, and a NUL byte is an error.
 *
 * Files are read in this order, later settings winning: the main file
 * (e.g. /etc/pinfer/pinferd.conf), then every regular file named *.conf in
 * the drop-in directory named after it plus ".d" (pinferd.conf.d/), in
 * byte order of their names (as systemd does: 10-site.conf before
 * 50-gpu.conf).  Other names there (editor backups, README) are skipped.
 */
#ifndef PF_CONF_H
#define PF_CONF_H

#include <stdbool.h>
#include <stddef.h>

#define PF_CONF_LINE_MAX 8192

/*
 * Parse one line in place (line is NUL-terminated, without or with its
 * newline).  Returns 0 for a blank or comment line, 1 for a setting with
 * *ret_key and *ret_value (NULL when the line has no '='; both point into
 * line, the value with its quotes and escapes decoded), or -EINVAL with a
 * static message in *ret_err.
 */
int pf_conf_parse_line(char *line, char **ret_key, char **ret_value, const char **ret_err);

/* Called for each setting of a file; a non-zero return stops the reading
 * and is returned by pf_conf_read_file. */
typedef int (*pf_conf_setting_fn)(void *ctx, const char *path, int lineno, const char *key, const char *value);

/*
 * Read one file and call fn for each setting.  A syntax error is printed
 * to stderr as "pinferd: PATH:LINE: message" and returns -EINVAL.  Returns
 * 0, -ENOENT when the file does not exist (nothing printed: the caller
 * decides whether that matters), another -errno (printed) when it cannot
 * be read, or fn's non-zero return.
 */
int pf_conf_read_file(const char *path, pf_conf_setting_fn fn, void *ctx);

/*
 * The drop-in files of main_path (main_path + ".d/" *.conf, in byte order
 * of their names): *ret_paths is an array of *ret_n malloc'ed paths (free
 * with pf_conf_free_list).  No directory is no files.  Returns 0 or -errno
 * (the directory exists but cannot be read; -ENAMETOOLONG).
 */
int pf_conf_dropins(const char *main_path, char ***ret_paths, int *ret_n);
void pf_conf_free_list(char **paths, int n);

#endif
