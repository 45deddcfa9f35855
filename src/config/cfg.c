/*
 * config/cfg: loader for INI files into declared option tables; see cfg.h.
 *
 * inih does the INI syntax. Debian's libinih is built without
 * INI_HANDLER_LINENO, so we feed it through ini_parse_stream() with our own
 * line reader, which counts lines: inih reads one line and handles it
 * before reading the next, so the count is the line being handled. The
 * reader also remembers whether the line was indented, which tells a
 * continuation line (inih calls the handler again with the same key) from
 * a repeated key.
 *
 * Load cost is O(sections * options) per key, fine for a few hundred
 * lines read once at start-up.
 */
#include "config/cfg.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/slice.h"
#include "base/xmalloc.h"

struct sec_state;

struct inst {
    const struct sec_state *sec;
    char *name;      /* suffix after the pattern prefix; NULL when fixed */
    void *data;      /* the section struct, size decl->size */
    unsigned *lines; /* per option: file line that set it, 0 = not set */
    unsigned line;   /* line of its [section] header; 0 = made by --set */
};

struct sec_state {
    const struct cfg_section *decl;
    size_t prefix_len;   /* pattern: length of "extension." ; 0 = fixed */
    struct inst **insts; /* each allocated alone: pointers stay valid */
    size_t count, alloc;
};

struct cfg {
    struct sec_state *secs;
    size_t count;
    char *path; /* the file loaded; NULL = none */
};

/* State of one ini_parse_stream run. */
struct load {
    struct cfg *c;
    const char *path;
    FILE *f;
    char *line;
    size_t line_cap;
    unsigned lineno;
    bool indented;          /* current line starts with SP/HTAB */
    unsigned section_line;  /* line of the last [section] header */
    struct inst *last_inst; /* target of the previous key, for continuation */
    const struct cfg_option *last_opt;
    unsigned err_line; /* first error; 0 = none */
    char *err;
    size_t errlen;
};

static void fmt_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
fmt_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool
is_pattern(const struct cfg_section *s)
{
    size_t n = strlen(s->name);
    return n >= 2 && s->name[n - 1] == '*' && s->name[n - 2] == '.';
}

/* --- values ------------------------------------------------------------ */

static void
list_clear(struct cfg_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static void
list_append_words(struct cfg_list *l, const char *v)
{
    const char *p = v;

    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t' && *p != ',')
            p++;
        if (p > start) {
            l->items = xrealloc(l->items, (l->count + 1) * sizeof(char *));
            l->items[l->count++] = xstrndup(start, (size_t)(p - start));
        }
    }
}

static const char *const bool_true[] = {"yes", "true", "on", "1", NULL};
static const char *const bool_false[] = {"no", "false", "off", "0", NULL};

static bool
word_in(const char *v, const char *const *words, int *idx)
{
    for (int i = 0; words[i]; i++) {
        if (strcasecmp(v, words[i]) == 0) {
            if (idx)
                *idx = i;
            return true;
        }
    }
    return false;
}

/* Store value v into the field of opt in data. append: a continuation line
 * of a list. Returns 0 or -EINVAL with a reason in err. */
static int
set_value(const struct cfg_option *opt, void *data, const char *v, bool append,
          char *err, size_t errlen)
{
    char *field = (char *)data + opt->offset;
    unsigned long long u;
    size_t n;
    int idx, rc;

    switch (opt->type) {
    case CFG_STRING:
    case CFG_PATH: {
        char **sp = (char **)(void *)field;
        n = strlen(v);
        /* Optional double quotes keep leading/trailing spaces. */
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
            v++;
            n -= 2;
        }
        free(*sp);
        *sp = xstrndup(v, n);
        return 0;
    }
    case CFG_UINT:
        rc = slice_to_u64(slice_cstr(v), UINT_MAX, &u);
        if (rc == -EINVAL) {
            fmt_err(err, errlen, "'%s': not an unsigned number: '%s'", opt->key,
                    v);
            return -EINVAL;
        }
        if (rc < 0 || u < opt->min || u > opt->max) {
            fmt_err(err, errlen, "'%s': %s out of range %u..%u", opt->key, v,
                    opt->min, opt->max);
            return -EINVAL;
        }
        *(unsigned *)(void *)field = (unsigned)u;
        return 0;
    case CFG_BOOL:
        if (word_in(v, bool_true, NULL)) {
            *(bool *)(void *)field = true;
            return 0;
        }
        if (word_in(v, bool_false, NULL)) {
            *(bool *)(void *)field = false;
            return 0;
        }
        fmt_err(err, errlen, "'%s': not a boolean (yes/no): '%s'", opt->key, v);
        return -EINVAL;
    case CFG_ENUM:
        if (word_in(v, opt->choices, &idx)) {
            *(int *)(void *)field = idx;
            return 0;
        }
        n = (size_t)snprintf(err, errlen, "'%s': '%s' is not one of:", opt->key,
                             v);
        for (int i = 0; opt->choices[i] && n < errlen; i++)
            n += (size_t)snprintf(err + n, errlen - n, " %s", opt->choices[i]);
        return -EINVAL;
    case CFG_LIST: {
        struct cfg_list *l = (struct cfg_list *)(void *)field;
        if (!append)
            list_clear(l);
        list_append_words(l, v);
        return 0;
    }
    }
    fmt_err(err, errlen, "'%s': bad option type", opt->key);
    return -EINVAL;
}

static void
free_values(const struct cfg_section *decl, void *data)
{
    for (size_t i = 0; i < decl->option_count; i++) {
        const struct cfg_option *o = &decl->options[i];
        char *field = (char *)data + o->offset;
        if (o->type == CFG_STRING || o->type == CFG_PATH) {
            free(*(char **)(void *)field);
            *(char **)(void *)field = NULL;
        } else if (o->type == CFG_LIST) {
            list_clear((struct cfg_list *)(void *)field);
        }
    }
}

/* --- sections and instances -------------------------------------------- */

/* A new instance with every default applied. A default that does not
 * parse is a bug in a table; report it like any other error. */
static struct inst *
inst_add(struct sec_state *s, const char *name, char *err, size_t errlen)
{
    struct inst *in;
    char why[256];

    if (s->count == s->alloc) {
        s->alloc = s->alloc ? s->alloc * 2 : 4;
        s->insts = xrealloc(s->insts, s->alloc * sizeof(*s->insts));
    }
    in = xcalloc(1, sizeof(*in));
    s->insts[s->count++] = in;
    in->sec = s;
    in->name = name ? xstrdup(name) : NULL;
    in->data = xcalloc(1, s->decl->size);
    in->lines = xcalloc(s->decl->option_count + 1, sizeof(unsigned));
    for (size_t i = 0; i < s->decl->option_count; i++) {
        const struct cfg_option *o = &s->decl->options[i];
        if (set_value(o, in->data, o->def ? o->def : "", false, why,
                      sizeof(why)) < 0) {
            fmt_err(err, errlen, "bad default in [%s]: %s", s->decl->name, why);
            return NULL;
        }
    }
    return in;
}

/* Find the instance for a section name as written ("sip",
 * "extension.100"), creating a pattern instance on first use. Returns
 * NULL with *unknown set when no section matches, or NULL on a bad
 * default. */
static struct inst *
inst_lookup(struct cfg *c, const char *name, bool *unknown, char *err,
            size_t errlen)
{
    *unknown = false;
    for (size_t i = 0; i < c->count; i++) {
        struct sec_state *s = &c->secs[i];
        if (s->prefix_len == 0) {
            if (strcasecmp(s->decl->name, name) == 0)
                return s->insts[0];
            continue;
        }
        if (strlen(name) <= s->prefix_len ||
            strncasecmp(s->decl->name, name, s->prefix_len) != 0)
            continue;
        const char *suffix = name + s->prefix_len;
        for (size_t j = 0; j < s->count; j++)
            if (strcmp(s->insts[j]->name, suffix) == 0)
                return s->insts[j];
        return inst_add(s, suffix, err, errlen);
    }
    *unknown = true;
    return NULL;
}

static const struct sec_state *
state_of(const struct cfg *c, const struct cfg_section *sec)
{
    for (size_t i = 0; i < c->count; i++)
        if (c->secs[i].decl == sec)
            return &c->secs[i];
    return NULL;
}

static const struct cfg_option *
opt_lookup(const struct cfg_section *decl, const char *key, size_t *idx)
{
    for (size_t i = 0; i < decl->option_count; i++) {
        if (strcasecmp(decl->options[i].key, key) == 0) {
            *idx = i;
            return &decl->options[i];
        }
    }
    return NULL;
}

/* --- file loading -------------------------------------------------------- */

static void load_fail_at(struct load *L, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
load_fail_at(struct load *L, unsigned line, const char *fmt, ...)
{
    char why[512];
    va_list ap;

    if (L->err_line)
        return; /* keep the first error */
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    L->err_line = line ? line : 1;
    fmt_err(L->err, L->errlen, "%s:%u: %s", L->path, L->err_line, why);
}

#define load_fail(L, ...) load_fail_at((L), (L)->lineno, __VA_ARGS__)

/* fgets-style reader for inih that counts lines. Stops the parse (NULL)
 * after the first error so the reported error is the first one. */
static char *
read_line(char *str, int num, void *stream)
{
    struct load *L = stream;
    ssize_t n;

    if (L->err_line)
        return NULL;
    n = getline(&L->line, &L->line_cap, L->f);
    if (n < 0)
        return NULL;
    L->lineno++;
    L->indented = n > 0 && (L->line[0] == ' ' || L->line[0] == '\t');
    size_t ws = strspn(L->line, " \t");
    if (L->line[ws] == '[')
        L->section_line = L->lineno;
    /* inih needs room for CR, LF and NUL beyond the text. */
    size_t text = (size_t)n;
    while (text && (L->line[text - 1] == '\n' || L->line[text - 1] == '\r'))
        text--;
    if (num < 4 || text > (size_t)num - 3 || (size_t)n > (size_t)num - 1) {
        load_fail(L, "line too long (max %d characters)", num - 3);
        return NULL;
    }
    memcpy(str, L->line, (size_t)n + 1);
    return str;
}

static int
on_key(void *user, const char *section, const char *key, const char *value)
{
    struct load *L = user;
    struct inst *in;
    const struct sec_state *s = NULL;
    const struct cfg_option *opt;
    char why[400];
    bool unknown;
    size_t idx;

    if (L->err_line)
        return 0;
    if (section[0] == '\0') {
        load_fail(L, "key '%s' outside any [section]", key);
        return 0;
    }
    in = inst_lookup(L->c, section, &unknown, why, sizeof(why));
    if (!in) {
        if (unknown)
            load_fail_at(L, L->section_line, "unknown section [%s]", section);
        else
            load_fail(L, "%s", why);
        return 0;
    }
    if (!in->line)
        in->line = L->section_line;
    s = in->sec;
    opt = opt_lookup(s->decl, key, &idx);
    if (!opt) {
        load_fail(L, "unknown key '%s' in [%s]", key, section);
        return 0;
    }
    /* inih reports an indented line after a key as the same key again. */
    bool cont = L->indented && L->last_inst == in && L->last_opt == opt;
    if (cont && opt->type != CFG_LIST) {
        load_fail(L, "'%s': continuation lines are only allowed for lists",
                  key);
        return 0;
    }
    if (!cont && in->lines[idx]) {
        load_fail(L, "'%s' set twice in [%s] (first on line %u)", key, section,
                  in->lines[idx]);
        return 0;
    }
    if (set_value(opt, in->data, value, cont, why, sizeof(why)) < 0) {
        load_fail(L, "[%s] %s", section, why);
        return 0;
    }
    if (!cont)
        in->lines[idx] = L->lineno;
    L->last_inst = in;
    L->last_opt = opt;
    return 1;
}

static int
load_file(struct cfg *c, const char *path, char *err, size_t errlen)
{
    struct load L = {
        .c = c,
        .path = path,
        .err = err,
        .errlen = errlen,
    };
    int rc;

    L.f = fopen(path, "re");
    if (!L.f) {
        rc = -errno;
        fmt_err(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    rc = ini_parse_stream(read_line, &L, on_key, &L);
    if (rc == 0 && !L.err_line && ferror(L.f)) {
        L.lineno++;
        load_fail(&L, "read error");
    }
    fclose(L.f);
    free(L.line);
    if (L.err_line) /* ours came first: inih stops once we stop reading */
        return -EINVAL;
    if (rc > 0) {
        fmt_err(err, errlen,
                "%s:%d: syntax error (expected [section] or key = value)", path,
                rc);
        return -EINVAL;
    }
    if (rc < 0) {
        fmt_err(err, errlen, "%s: cannot parse (inih error %d)", path, rc);
        return -EINVAL;
    }
    return 0;
}

/* "section.key=value", split at the last dot before '='. */
static int
apply_set(struct cfg *c, const char *arg, char *err, size_t errlen)
{
    const char *eq = strchr(arg, '=');
    const char *dot = NULL;
    const struct sec_state *s = NULL;
    const struct cfg_option *opt;
    struct inst *in;
    char why[400], section[256], key[128];
    bool unknown;
    size_t idx;

    for (const char *p = arg; eq && p < eq; p++)
        if (*p == '.')
            dot = p;
    if (!eq || !dot || dot == arg || dot + 1 == eq) {
        fmt_err(err, errlen, "--set %s: expected section.key=value", arg);
        return -EINVAL;
    }
    if ((size_t)(dot - arg) >= sizeof(section) ||
        (size_t)(eq - dot - 1) >= sizeof(key)) {
        fmt_err(err, errlen, "--set %s: name too long", arg);
        return -EINVAL;
    }
    slice_to_cstr(slice_make(arg, (size_t)(dot - arg)), section,
                  sizeof(section));
    slice_to_cstr(slice_make(dot + 1, (size_t)(eq - dot - 1)), key,
                  sizeof(key));
    in = inst_lookup(c, section, &unknown, why, sizeof(why));
    if (!in) {
        if (unknown)
            fmt_err(err, errlen, "--set %s: unknown section [%s]", arg,
                    section);
        else
            fmt_err(err, errlen, "--set %s: %s", arg, why);
        return -EINVAL;
    }
    s = in->sec;
    opt = opt_lookup(s->decl, key, &idx);
    if (!opt) {
        fmt_err(err, errlen, "--set %s: unknown key '%s' in [%s]", arg, key,
                section);
        return -EINVAL;
    }
    /* Values on the command line arrive unstripped. */
    const char *v = eq + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (set_value(opt, in->data, v, false, why, sizeof(why)) < 0) {
        fmt_err(err, errlen, "--set %s: %s", arg, why);
        return -EINVAL;
    }
    return 0;
}

/* Make every relative CFG_PATH value of every instance base/value. */
static void
resolve_paths(struct cfg *c, const char *base)
{
    size_t blen = strlen(base);

    while (blen > 1 && base[blen - 1] == '/')
        blen--;
    for (size_t i = 0; i < c->count; i++) {
        struct sec_state *s = &c->secs[i];
        for (size_t j = 0; j < s->count; j++) {
            for (size_t k = 0; k < s->decl->option_count; k++) {
                const struct cfg_option *o = &s->decl->options[k];
                if (o->type != CFG_PATH)
                    continue;
                char **sp = (char **)(void *)((char *)s->insts[j]->data +
                                              o->offset);
                if (!*sp || !(*sp)[0] || (*sp)[0] == '/')
                    continue;
                size_t vlen = strlen(*sp);
                char *joined = xmalloc(blen + 1 + vlen + 1);
                memcpy(joined, base, blen);
                joined[blen] = '/';
                memcpy(joined + blen + 1, *sp, vlen + 1);
                free(*sp);
                *sp = joined;
            }
        }
    }
}

int
cfg_load(const struct cfg_section *const *sections, size_t section_count,
         const char *path, const char *const *sets, size_t set_count,
         struct cfg **out, char *err, size_t errlen)
{
    return cfg_load_in(NULL, sections, section_count, path, sets, set_count,
                       out, err, errlen);
}

int
cfg_load_in(const char *base_dir, const struct cfg_section *const *sections,
            size_t section_count, const char *path, const char *const *sets,
            size_t set_count, struct cfg **out, char *err, size_t errlen)
{
    struct cfg *c = xcalloc(1, sizeof(*c));
    char why[400];
    int rc = 0;

    if (errlen)
        err[0] = '\0';
    c->secs = xcalloc(section_count ? section_count : 1, sizeof(*c->secs));
    c->count = section_count;
    for (size_t i = 0; i < section_count; i++) {
        struct sec_state *s = &c->secs[i];
        s->decl = sections[i];
        if (is_pattern(s->decl)) {
            s->prefix_len = strlen(s->decl->name) - 1; /* keep the dot */
        } else if (!inst_add(s, NULL, err, errlen)) {
            rc = -EINVAL;
            goto fail;
        }
    }
    if (path) {
        c->path = xstrdup(path);
        rc = load_file(c, path, err, errlen);
        if (rc < 0)
            goto fail;
    }
    for (size_t i = 0; i < set_count; i++) {
        rc = apply_set(c, sets[i], err, errlen);
        if (rc < 0)
            goto fail;
    }
    if (base_dir && base_dir[0])
        resolve_paths(c, base_dir);
    for (size_t i = 0; i < c->count; i++) {
        struct sec_state *s = &c->secs[i];
        for (size_t j = 0; j < s->count && s->decl->finish; j++) {
            if (s->decl->finish(s->insts[j]->data, why, sizeof(why)) < 0) {
                rc = -EINVAL;
                if (s->insts[j]->name)
                    fmt_err(err, errlen, "%s: [%.*s%s] %s",
                            path ? path : "config", (int)s->prefix_len,
                            s->decl->name, s->insts[j]->name, why);
                else
                    fmt_err(err, errlen, "%s: [%s] %s", path ? path : "config",
                            s->decl->name, why);
                goto fail;
            }
        }
    }
    *out = c;
    return 0;
fail:
    cfg_free(c);
    return rc;
}

void
cfg_free(struct cfg *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->count; i++) {
        struct sec_state *s = &c->secs[i];
        for (size_t j = 0; j < s->count; j++) {
            free_values(s->decl, s->insts[j]->data);
            free(s->insts[j]->data);
            free(s->insts[j]->lines);
            free(s->insts[j]->name);
            free(s->insts[j]);
        }
        free(s->insts);
    }
    free(c->secs);
    free(c->path);
    free(c);
}

const void *
cfg_get(const struct cfg *c, const struct cfg_section *sec)
{
    const struct sec_state *s = state_of(c, sec);
    if (!s || s->prefix_len || s->count == 0)
        return NULL;
    return s->insts[0]->data;
}

size_t
cfg_instance_count(const struct cfg *c, const struct cfg_section *sec)
{
    const struct sec_state *s = state_of(c, sec);
    return s && s->prefix_len ? s->count : 0;
}

const void *
cfg_instance(const struct cfg *c, const struct cfg_section *sec, size_t idx,
             const char **name)
{
    const struct sec_state *s = state_of(c, sec);
    if (!s || !s->prefix_len || idx >= s->count)
        return NULL;
    if (name)
        *name = s->insts[idx]->name;
    return s->insts[idx]->data;
}

unsigned
cfg_instance_origin(const struct cfg *c, const struct cfg_section *sec,
                    size_t idx, const char **path)
{
    const struct sec_state *s = state_of(c, sec);
    if (!s || !s->prefix_len || idx >= s->count || !s->insts[idx]->line) {
        if (path)
            *path = NULL;
        return 0;
    }
    if (path)
        *path = c->path;
    return s->insts[idx]->line;
}

const void *
cfg_instance_find(const struct cfg *c, const struct cfg_section *sec,
                  const char *name)
{
    const struct sec_state *s = state_of(c, sec);
    if (!s || !s->prefix_len)
        return NULL;
    for (size_t i = 0; i < s->count; i++)
        if (strcmp(s->insts[i]->name, name) == 0)
            return s->insts[i]->data;
    return NULL;
}

/* --- reference output ----------------------------------------------------- */

static void
type_text(const struct cfg_option *o, char *out, size_t len)
{
    size_t n;

    switch (o->type) {
    case CFG_STRING:
        snprintf(out, len, "string");
        return;
    case CFG_PATH:
        snprintf(out, len, "path (relative: to the state directory)");
        return;
    case CFG_UINT:
        snprintf(out, len, "integer %u..%u", o->min, o->max);
        return;
    case CFG_BOOL:
        snprintf(out, len, "yes/no");
        return;
    case CFG_LIST:
        snprintf(out, len, "list");
        return;
    case CFG_ENUM:
        n = (size_t)snprintf(out, len, "one of");
        for (int i = 0; o->choices[i] && n < len; i++)
            n += (size_t)snprintf(out + n, len - n, "%s %s", i ? "," : "",
                                  o->choices[i]);
        return;
    }
    snprintf(out, len, "?");
}

/* Word-wrap text at 76 columns with an indent. */
static void
print_wrapped(FILE *f, const char *text, int indent)
{
    const char *p = text;
    int col = indent;

    fprintf(f, "%*s", indent, "");
    while (*p) {
        while (*p == ' ')
            p++;
        const char *w = p;
        while (*p && *p != ' ')
            p++;
        int wl = (int)(p - w);
        if (wl == 0)
            break;
        if (col > indent && col + 1 + wl > 76) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        }
        if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", wl, w);
        col += wl;
    }
    fputc('\n', f);
}

void
cfg_print_help(FILE *f, const struct cfg_section *const *sections,
               size_t section_count, bool markdown)
{
    char type[256];

    for (size_t i = 0; i < section_count; i++) {
        const struct cfg_section *s = sections[i];
        if (markdown) {
            fprintf(f, "%s## [%s]\n\n%s\n\n", i ? "\n" : "", s->name, s->help);
            fprintf(f, "| Key | Type | Default | Description |\n");
            fprintf(f, "|-----|------|---------|-------------|\n");
        } else {
            fprintf(f, "%s[%s]\n", i ? "\n" : "", s->name);
            print_wrapped(f, s->help, 2);
        }
        for (size_t j = 0; j < s->option_count; j++) {
            const struct cfg_option *o = &s->options[j];
            const char *def = o->def && o->def[0] ? o->def : NULL;
            type_text(o, type, sizeof(type));
            if (markdown) {
                fprintf(f, "| `%s` | %s | %s%s%s | %s |\n", o->key, type,
                        def ? "`" : "", def ? def : "(empty)", def ? "`" : "",
                        o->help);
            } else {
                fprintf(f, "\n  %s = %s\n", o->key, def ? def : "");
                fprintf(f, "      (%s)\n", type);
                print_wrapped(f, o->help, 6);
            }
        }
    }
}
