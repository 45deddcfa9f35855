/*
 * config/cfg: INI configuration loaded into option tables (style.md §9).
 *
 * Every option is declared once, in a table owned by the room that uses it:
 * key, type, range, default, target field (offsetof) and help. The loader,
 * the validator, `pushpbx --help-config` and docs/configuration.md all read
 * those tables, so they cannot disagree. The config room knows no room: the
 * program hands cfg_load() the list of sections it links in.
 *
 * A section is either fixed ("sip") or a pattern ("extension.*") that
 * matches any "[extension.<name>]" in the file; each match becomes one
 * instance with its own struct. Unknown sections and keys, bad values and
 * out-of-range numbers are errors "FILE:LINE: reason" (or "--set ARG:
 * reason" for command-line overrides); the program stops with exit code 2.
 *
 * A loaded struct cfg is immutable and passed explicitly (no global). A
 * reload would load a new one and swap the pointer at a safe point.
 * Thread: loading is single-threaded; a loaded cfg may be read from any
 * thread.
 */
#ifndef PUSHPBX_CONFIG_CFG_H
#define PUSHPBX_CONFIG_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum cfg_type {
    CFG_STRING, /* char * (owned by the cfg; "" when empty) */
    CFG_UINT,   /* unsigned int, checked against min..max */
    CFG_BOOL,   /* bool: yes/no, true/false, on/off, 1/0 */
    CFG_ENUM,   /* int: index into choices[] */
    CFG_LIST,   /* struct cfg_list: items split at spaces and commas */
    CFG_PATH,   /* char *, like CFG_STRING; a relative path is resolved
                   against the base folder given to cfg_load_in() */
};

/* Target of a CFG_LIST option. Items are owned by the cfg. */
struct cfg_list {
    char **items;
    size_t count;
};

struct cfg_option {
    const char *key;
    enum cfg_type type;
    unsigned min, max;          /* CFG_UINT only */
    const char *def;            /* default, parsed like a file value */
    size_t offset;              /* offsetof(section struct, field) */
    const char *const *choices; /* CFG_ENUM: NULL-terminated names */
    const char *help;           /* one or two sentences */
};

/* Called once per section instance after all values (file, then --set)
 * are in: derive defaults that depend on other keys (realm = domain) and
 * check cross-field rules. sec is the section struct (mutable here only).
 * Return 0, or -EINVAL with a reason written into err (no FILE:LINE; the
 * loader prefixes the section name). */
typedef int cfg_finish_fn(void *sec, char *err, size_t errlen);

struct cfg_section {
    const char *name; /* "sip", or a pattern "extension.*" */
    const char *help;
    const struct cfg_option *options;
    size_t option_count;
    size_t size;           /* sizeof the section struct */
    cfg_finish_fn *finish; /* may be NULL */
};

struct cfg;

/* Load path (NULL = defaults only) and then apply the overrides in sets
 * ("section.key=value", split at the LAST dot before '=' so
 * "extension.100.password=x" works; later ones win). sections are
 * borrowed and must outlive the cfg. On success returns 0 and sets *out
 * (owned; free with cfg_free). On failure returns -EINVAL (bad config) or
 * -errno (file not readable) and writes one line "FILE:LINE: reason" into
 * err (NUL-terminated, truncated to errlen). */
int cfg_load(const struct cfg_section *const *sections, size_t section_count,
             const char *path, const char *const *sets, size_t set_count,
             struct cfg **out, char *err, size_t errlen);

/* cfg_load, and then every non-empty relative CFG_PATH value (from the
 * file, --set or a default) becomes base_dir/value, so that an installed
 * configuration names its files relative to the state directory, not the
 * working directory. base_dir NULL or "" resolves nothing (= cfg_load). */
int cfg_load_in(const char *base_dir, const struct cfg_section *const *sections,
                size_t section_count, const char *path,
                const char *const *sets, size_t set_count, struct cfg **out,
                char *err, size_t errlen);
void cfg_free(struct cfg *c);

/* The struct of a fixed section (defaults when the file omits it). sec
 * must be one of the sections given to cfg_load; NULL otherwise. */
const void *cfg_get(const struct cfg *c, const struct cfg_section *sec);

/* Instances of a pattern section, in file order (--set may add more at
 * the end). cfg_instance returns NULL past the end; *name (may be NULL)
 * receives the part after the prefix, e.g. "100" for [extension.100]. */
size_t cfg_instance_count(const struct cfg *c, const struct cfg_section *sec);
const void *cfg_instance(const struct cfg *c, const struct cfg_section *sec,
                         size_t idx, const char **name);
/* Where instance idx was defined: returns the line of its [section]
 * header in the file and sets *path (may be NULL) to the file's path as
 * given to cfg_load (borrowed from c). Returns 0 and sets *path NULL for an
 * instance only --set created, or idx out of range. */
unsigned cfg_instance_origin(const struct cfg *c,
                             const struct cfg_section *sec, size_t idx,
                             const char **path);
const void *cfg_instance_find(const struct cfg *c,
                              const struct cfg_section *sec, const char *name);

/* Print the reference of all options: plain text (--help-config) or
 * Markdown (docs/configuration.md is generated from it). */
void cfg_print_help(FILE *f, const struct cfg_section *const *sections,
                    size_t section_count, bool markdown);

#endif
