/*
 * ctl/pushpbxctl: command-line client of the admin HTTP API (libcurl +
 * jansson), plus the push connectivity check, which needs no daemon.
 *
 * Output is a table for people, or the API's JSON with --json. Exit codes
 * (docs/admin.md): 0 ok, 1 other server error, 2 usage, 3 cannot reach
 * the daemon, 4 unauthorized (401), 5 not found (404), 6 conflict (409),
 * 7 bad request (400/413, or an argument that is not an extension number),
 * 8 connectivity check failed.
 *
 * Arguments that go into a URL path (extension numbers) are checked
 * against the registrar's number rule and percent-encoded (ext_path), so
 * "1018/prov" or "100?x" can never address another route.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <getopt.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "base/buf.h"

enum {
    EX_OK = 0,
    EX_SERVER = 1,
    EX_USAGE = 2,
    EX_UNREACHABLE = 3,
    EX_UNAUTHORIZED = 4,
    EX_NOTFOUND = 5,
    EX_CONFLICT = 6,
    EX_BADREQ = 7,
    EX_CHECK = 8,
};

struct ctl {
    const char *url;
    char token[256];
    bool json;
    long timeout_s;
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: pushpbxctl [--url URL] [--token T | --token-file F] "
               "[--json] COMMAND\n"
               "\n"
               "  ext list                     extensions\n"
               "  ext add NUM [--name N] [--password P]  (no password: "
               "generated, shown once)\n"
               "  ext del NUM                  delete (bindings, devices, "
               "link)\n"
               "  ext passwd NUM               new generated password, shown "
               "once\n"
               "  reg list [--limit N] [--after EXT]  SIP bindings and push "
               "devices per extension\n"
               "                               (all pages, or one page of N)\n"
               "  calls                        recent calls and their "
               "outcome\n"
               "  nodes                        the cluster's nodes: up or "
               "down, bindings, calls\n"
               "  push list                    recent pushes\n"
               "  push test EXT                send a test push to EXT's "
               "devices\n"
               "  push forget EXT              delete the extension's push "
               "devices\n"
               "  prov show EXT [--new]        provisioning link (create or "
               "renew)\n"
               "  prov revoke EXT              revoke the link\n"
               "  backup FILE                  a consistent copy of the "
               "database, taken\n"
               "                               while the daemon runs "
               "(restore: pushpbx --restore)\n"
               "  check [--apns-url U] [--fcm-url U] [--oauth-url U] "
               "[--cacert F]\n"
               "                               DNS, TCP, TLS and HTTP towards "
               "the push services,\n"
               "                               then (with a token) the "
               "daemon's authenticated step\n"
               "\n"
               "  --url      admin base URL (default $PUSHPBX_URL or "
               "http://127.0.0.1:8080)\n"
               "  --token    API token (default $PUSHPBX_TOKEN, else "
               "--token-file)\n"
               "  --token-file  default var/admin.token, else "
               "/var/lib/pushpbx/admin.token\n"
               "exit: 0 ok, 1 server error, 2 usage, 3 unreachable, 4 "
               "unauthorized,\n"
               "      5 not found, 6 conflict, 7 bad request (or EXT not an "
               "extension number),\n"
               "      8 check failed\n");
}

/* ---- path arguments ---------------------------------------------------- */

/* The registrar's extension number rule (reg_ext_number_valid): 1 to 32
 * of A-Z a-z 0-9 _ . + - */
static bool
number_ok(const char *n)
{
    size_t len = strlen(n);

    if (len == 0 || len > 32)
        return false;
    for (const char *p = n; *p; p++) {
        char c = *p;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c == '_' || c == '-' || c == '.' ||
              c == '+'))
            return false;
    }
    return true;
}

/* Write fmt with ext as one percent-encoded path segment into out
 * (fmt has one %s). ext must be an extension number; anything else
 * ("1018/prov", "100?x", "../x", "%2F") is refused with a message, before
 * any request. Encoded beyond the rule: '+' (%2B), and the dots of "."
 * and ".." (%2E), which URL parsers would otherwise remove as dot
 * segments. Returns true, or false after printing why. */
static bool
ext_path(const char *fmt, const char *ext, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    char seg[3 * 32 + 1];
    size_t o = 0;
    bool dots = strspn(ext, ".") == strlen(ext);

    if (!number_ok(ext)) {
        fprintf(stderr,
                "pushpbxctl: '%s' is not an extension number (1 to 32 of "
                "A-Z a-z 0-9 _ . + -)\n",
                ext);
        return false;
    }
    for (const unsigned char *p = (const unsigned char *)ext; *p; p++) {
        if (*p == '+' || (dots && *p == '.')) {
            seg[o++] = '%';
            seg[o++] = hex[*p >> 4];
            seg[o++] = hex[*p & 15];
        } else {
            seg[o++] = (char)*p;
        }
    }
    seg[o] = '\0';
    snprintf(out, outlen, fmt, seg);
    return true;
}

/* ---- HTTP -------------------------------------------------------------- */

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;

    if (buf_append(b, p, size * n) < 0)
        return 0; /* over the cap: curl fails the transfer */
    return size * n;
}

/* One API call. Returns the HTTP status (or -1 if unreachable) and the
 * parsed body in *out (NULL when empty or not JSON). */
static long
call(const struct ctl *c, const char *method, const char *path, json_t *body,
     json_t **out)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = NULL;
    struct buf resp;
    char url[1024], auth[300];
    char *payload = NULL;
    long status = -1;

    *out = NULL;
    buf_init(&resp, 16u << 20);
    snprintf(url, sizeof(url), "%s%s", c->url, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
    hdr = curl_slist_append(hdr, auth);
    hdr = curl_slist_append(hdr, "Accept: application/json");
    if (body) {
        payload = json_dumps(body, JSON_COMPACT);
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0 && !body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (resp.len)
            *out = json_loadb(resp.data, resp.len, 0, NULL);
    } else {
        fprintf(stderr, "pushpbxctl: %s: %s\n", url, curl_easy_strerror(rc));
    }
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    free(payload);
    buf_fini(&resp);
    return status;
}

static int
exit_for(long status)
{
    if (status < 0)
        return EX_UNREACHABLE;
    if (status < 300)
        return EX_OK;
    switch (status) {
    case 401:
        return EX_UNAUTHORIZED;
    case 404:
        return EX_NOTFOUND;
    case 409:
        return EX_CONFLICT;
    case 400:
    case 413:
        return EX_BADREQ;
    default:
        return EX_SERVER;
    }
}

/* Print an error answer; returns the exit code for status. */
static int
report(long status, json_t *j)
{
    if (status >= 300) {
        const char *e = json_string_value(json_object_get(j, "error"));
        const char *f = json_string_value(json_object_get(j, "field"));
        fprintf(stderr, "pushpbxctl: %ld %s%s%s%s\n", status, e ? e : "error",
                f ? " (field " : "", f ? f : "", f ? ")" : "");
    }
    return exit_for(status);
}

static void
print_json(json_t *j)
{
    if (j) {
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        putchar('\n');
    }
}

static const char *
str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* GET/POST/DELETE path; in --json mode print the body; call show(j) for
 * tables. */
static int
simple(const struct ctl *c, const char *method, const char *path, json_t *body,
       void (*show)(json_t *))
{
    json_t *j;
    long st = call(c, method, path, body, &j);
    int ex = report(st, j);

    if (ex == EX_OK) {
        if (c->json)
            print_json(j);
        else if (show)
            show(j);
    }
    json_decref(j);
    json_decref(body);
    return ex;
}

/* ---- tables ------------------------------------------------------------ */

static void
show_ext_list(json_t *j)
{
    size_t i;
    json_t *e;

    printf("%-10s %-24s %-8s %s\n", "NUMBER", "NAME", "ENABLED", "BINDINGS");
    json_array_foreach(json_object_get(j, "items"), i, e)
    {
        printf("%-10s %-24s %-8s %lld\n", str(e, "number"), str(e, "name"),
               json_is_true(json_object_get(e, "enabled")) ? "yes" : "no",
               (long long)json_integer_value(json_object_get(e, "bindings")));
    }
}

static void
show_ext_one(json_t *j)
{
    printf("extension %s (%s)\n", str(j, "number"), str(j, "name"));
    if (json_object_get(j, "password"))
        printf("password  %s  (shown once)\n", str(j, "password"));
}

static void
show_reg_header(void)
{
    printf("%-8s %-12s %-5s %-22s %-8s %-10s %s\n", "EXT", "NAME", "TP",
           "SOURCE", "EXPIRES", "NODE", "CONTACT / PUSH");
}

/* The rows of one page of GET /api/registrations. */
static void
show_reg_rows(json_t *j)
{
    size_t i, k;
    json_t *e, *b;

    json_array_foreach(json_object_get(j, "items"), i, e)
    {
        json_t *bs = json_object_get(e, "bindings");
        json_t *ps = json_object_get(e, "push");
        if (json_array_size(bs) == 0)
            printf("%-8s %-12s %-5s %-22s %-8s %-10s %s\n", str(e, "number"),
                   str(e, "name"), "-", "-", "-", "-", "(not registered)");
        json_array_foreach(bs, k, b)
        {
            const char *node = str(b, "node");
            printf(
                "%-8s %-12s %-5s %-22s %-8lld %-10s %s\n", str(e, "number"),
                str(e, "name"), str(b, "transport"), str(b, "source"),
                (long long)json_integer_value(json_object_get(b, "expires_in")),
                node[0] ? node : "-", str(b, "contact"));
        }
        json_array_foreach(ps, k, b)
        {
            printf("%-8s %-12s %-5s %-22s %-8s %-10s push %s %s... %s\n",
                   str(e, "number"), "", "", "", "", "", str(b, "provider"),
                   str(b, "token_prefix"), str(b, "state"));
        }
    }
}

/* One page (reg list --limit N). */
static void
show_reg_list(json_t *j)
{
    show_reg_header();
    show_reg_rows(j);
    if (!json_is_true(json_object_get(j, "push_available")))
        printf("(push devices: not available)\n");
    if (json_is_string(json_object_get(j, "next")))
        printf("(more: reg list --limit %lld --after %s)\n",
               (long long)json_integer_value(json_object_get(j, "limit")),
               str(j, "next"));
}

static void
show_push_list(json_t *j)
{
    size_t i;
    json_t *p;

    if (!json_is_true(json_object_get(j, "available"))) {
        printf("recent pushes: not available\n");
        return;
    }
    printf("%-10s %-8s %-5s %-10s %-10s %-18s %s\n", "TIME", "EXT", "PROV",
           "TYPE", "TOKEN", "STATUS", "REASON");
    json_array_foreach(json_object_get(j, "items"), i, p)
    {
        char when[16] = "";
        time_t t = (time_t)json_integer_value(json_object_get(p, "at"));
        struct tm tm;
        if (t && localtime_r(&t, &tm))
            strftime(when, sizeof(when), "%H:%M:%S", &tm);
        printf("%-10s %-8s %-5s %-10s %-10s %-18s %s\n", when, str(p, "ext"),
               str(p, "provider"), str(p, "type"), str(p, "token_prefix"),
               str(p, "status"), str(p, "reason"));
    }
}

static void
show_push_test(json_t *j)
{
    size_t i;
    json_t *d;

    printf("test push: %s %s\n", str(j, "status"), str(j, "reason"));
    json_array_foreach(json_object_get(j, "devices"), i, d)
    {
        printf("  %-5s %s... %-16s HTTP %lld %s (%lld attempt%s, %.0f ms)\n",
               str(d, "provider"), str(d, "token_prefix"), str(d, "status"),
               (long long)json_integer_value(json_object_get(d, "http_status")),
               str(d, "reason"),
               (long long)json_integer_value(json_object_get(d, "attempts")),
               json_integer_value(json_object_get(d, "attempts")) == 1 ? ""
                                                                       : "s",
               json_number_value(json_object_get(d, "latency_ms")));
    }
}

static void
show_calls(json_t *j)
{
    size_t i;
    json_t *c;

    if (!json_is_true(json_object_get(j, "available"))) {
        printf("recent calls: not available\n");
        return;
    }
    printf("%-10s %-8s %-8s %-16s %-9s %s\n", "TIME", "FROM", "TO", "RESULT",
           "RING/DUR", "CALL-ID");
    json_array_foreach(json_object_get(j, "items"), i, c)
    {
        char when[16] = "", dur[24];
        time_t t = (time_t)json_integer_value(json_object_get(c, "started_at"));
        struct tm tm;
        if (t && localtime_r(&t, &tm))
            strftime(when, sizeof(when), "%H:%M:%S", &tm);
        snprintf(dur, sizeof(dur), "%.1fs",
                 (double)json_integer_value(
                     json_object_get(c, "duration_ms")) /
                     1000.0);
        printf("%-10s %-8s %-8s %-16s %-9s %s\n", when, str(c, "from"),
               str(c, "to"), str(c, "result"), dur, str(c, "call_id"));
    }
}

/* pushpbxctl nodes: GET /api/nodes (docs/cluster.md). */
static void
show_nodes(json_t *j)
{
    size_t i;
    json_t *n;

    if (!json_is_true(json_object_get(j, "cluster")))
        printf("single node (no [cluster] node set)\n");
    printf("%-16s %-5s %-28s %-9s %-8s %s\n", "NODE", "STATE", "ADVERTISE",
           "BINDINGS", "CALLS", "LAST SEEN");
    json_array_foreach(json_object_get(j, "items"), i, n)
    {
        char when[16] = "-", calls[24] = "-";
        time_t t = (time_t)json_integer_value(json_object_get(n, "last_seen"));
        struct tm tm;
        if (t && localtime_r(&t, &tm))
            strftime(when, sizeof(when), "%H:%M:%S", &tm);
        json_t *cj = json_object_get(n, "calls");
        if (json_is_integer(cj))
            snprintf(calls, sizeof(calls), "%lld",
                     (long long)json_integer_value(cj));
        const char *name = str(n, "name");
        printf("%-16s %-5s %-28s %-9lld %-8s %s%s\n", name[0] ? name : "-",
               json_is_true(json_object_get(n, "alive")) ? "up" : "down",
               str(n, "advertise")[0] ? str(n, "advertise") : "-",
               (long long)json_integer_value(json_object_get(n, "bindings")),
               calls, when,
               json_is_true(json_object_get(n, "self")) ? "  (this node)" : "");
    }
}

static void
show_prov(json_t *j)
{
    printf("extension %s\nlink      %s\n", str(j, "ext"), str(j, "url"));
}

static void
show_password(json_t *j)
{
    printf("extension %s\npassword  %s  (shown once)\n", str(j, "number"),
           str(j, "password"));
}

/* ---- connectivity check ------------------------------------------------ */

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
    return size * n;
}

struct target {
    const char *what;
    const char *url;
};

static bool
step(const char *name, bool ok, const char *detail)
{
    printf("  %-5s %s%s%s\n", ok ? "ok" : "FAIL", name, detail[0] ? ": " : "",
           detail);
    return ok;
}

/* DNS, TCP (curl CONNECT_ONLY over http), TLS (CONNECT_ONLY over https),
 * then one HTTP request (any status counts: the API answered). The
 * authenticated step needs the credentials, which only the daemon has:
 * cmd_check asks it (POST /api/push/check). */
static bool
check_target(const struct target *t, const char *cacert, long timeout_s)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *scheme = NULL, detail[512];
    bool ok = true;

    printf("%s (%s)\n", t->what, t->url);
    if (curl_url_set(u, CURLUPART_URL, t->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        curl_url_cleanup(u);
        return step("url", false, "cannot parse");
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);

    /* DNS */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0) {
        snprintf(detail, sizeof(detail), "%s: %s", host, gai_strerror(g));
        ok = step("dns", false, detail);
    } else {
        char ip[INET6_ADDRSTRLEN] = "?";
        void *addr =
            ai->ai_family == AF_INET6
                ? (void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                : (void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        inet_ntop(ai->ai_family, addr, ip, sizeof(ip));
        snprintf(detail, sizeof(detail), "%s -> %s", host, ip);
        step("dns", true, detail);
        freeaddrinfo(ai);
    }

    /* TCP, then TLS, then HTTP: each a fresh curl transfer so a failure
     * names its step. */
    const char *steps[] = {"tcp", "tls", "http"};
    for (int s = 0; ok && s < 3; s++) {
        CURL *h = curl_easy_init();
        char url[600];
        if (s == 0)
            snprintf(url, sizeof(url), "telnet://%s:%s", host, port);
        else
            snprintf(url, sizeof(url), "%s", t->url);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, timeout_s);
        if (s < 2)
            curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
        else
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        if (cacert)
            curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
        CURLcode rc = curl_easy_perform(h);
        if (rc == CURLE_OK) {
            long code = 0;
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
            if (s == 2)
                snprintf(detail, sizeof(detail),
                         "HTTP %ld (unauthenticated probe; credentials "
                         "not checked)",
                         code);
            else
                snprintf(detail, sizeof(detail), "%s:%s", host, port);
            step(steps[s], true, detail);
        } else {
            snprintf(detail, sizeof(detail), "%s", curl_easy_strerror(rc));
            ok = step(steps[s], false, detail);
        }
        curl_easy_cleanup(h);
        if (s == 0 && scheme && strcmp(scheme, "https") != 0)
            s++; /* plain http: no TLS step */
    }
    curl_free(host);
    curl_free(port);
    curl_free(scheme);
    curl_url_cleanup(u);
    return ok;
}

/* The daemon's authenticated step: 1 all ok, 0 a provider failed, -1 not
 * asked (no token) or not reachable. *out: its answer (owned). */
static int
daemon_check(const struct ctl *c, bool have_token, json_t **out)
{
    struct ctl slow = *c;
    long st;

    *out = NULL;
    if (!have_token)
        return -1;
    if (slow.timeout_s < 40)
        slow.timeout_s = 40; /* the daemon waits for APNs and FCM */
    st = call(&slow, "POST", "/api/push/check", NULL, out);
    if (st != 200 || !json_is_object(*out)) {
        fprintf(stderr,
                "pushpbxctl: authenticated step not run (daemon at %s "
                "answered %ld)\n",
                c->url, st);
        json_decref(*out);
        *out = NULL;
        return -1;
    }
    return json_is_true(json_object_get(*out, "ok")) ? 1 : 0;
}

static int
cmd_check(const struct ctl *c, bool have_token, int argc, char **argv)
{
    long timeout_s = c->timeout_s;
    static const struct option lo[] = {
        {"apns-url", required_argument, NULL, 'a'},
        {"fcm-url", required_argument, NULL, 'f'},
        {"oauth-url", required_argument, NULL, 'o'},
        {"cacert", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    struct target t[3];
    size_t n = 0;
    const char *cacert = NULL;
    int opt;

    optind = 0; /* glibc: 0 re-initialises getopt for a new argv */
    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (n == 3 && opt != 'c')
            return EX_USAGE;
        switch (opt) {
        case 'a':
            t[n++] = (struct target){"APNs", optarg};
            break;
        case 'f':
            t[n++] = (struct target){"FCM", optarg};
            break;
        case 'o':
            t[n++] = (struct target){"Google OAuth (FCM tokens)", optarg};
            break;
        case 'c':
            cacert = optarg;
            break;
        default:
            return EX_USAGE;
        }
    }
    if (optind < argc)
        return EX_USAGE;
    json_t *auth = NULL;
    int dc = daemon_check(c, have_token, &auth);
    size_t k;
    json_t *it;
    /* The daemon's own provider URLs (pushsim in tests), unless given. */
    if (n == 0 && auth) {
        json_array_foreach(json_object_get(auth, "items"), k, it)
        {
            const char *url = str(it, "url");
            bool apns = strcmp(str(it, "provider"), "apns") == 0;
            if (n < 3 && url[0])
                t[n++] = (struct target){apns ? "APNs" : "FCM", url};
            if (!apns && n < 3 &&
                strcmp(url, "https://fcm.googleapis.com") == 0)
                t[n++] = (struct target){"Google OAuth (FCM tokens)",
                                         "https://oauth2.googleapis.com"};
        }
    }
    if (n == 0) {
        t[n++] = (struct target){"APNs", "https://api.push.apple.com"};
        t[n++] = (struct target){"FCM", "https://fcm.googleapis.com"};
        t[n++] = (struct target){"Google OAuth (FCM tokens)",
                                 "https://oauth2.googleapis.com"};
    }
    bool all = true;
    for (size_t i = 0; i < n; i++)
        all = check_target(&t[i], cacert, timeout_s) && all;
    if (dc >= 0) {
        printf("authenticated step (daemon at %s)\n", c->url);
        if (json_array_size(json_object_get(auth, "items")) == 0)
            printf("  -     no push provider enabled in the daemon\n");
        json_array_foreach(json_object_get(auth, "items"), k, it)
        {
            char name[64];
            snprintf(name, sizeof(name), "%s %s", str(it, "provider"),
                     str(it, "step"));
            step(name, json_is_true(json_object_get(it, "ok")),
                 str(it, "detail"));
        }
        all = all && dc == 1;
    }
    json_decref(auth);
    if (all) {
        printf("all push services reachable%s\n",
               dc == 1 ? ", credentials accepted" : "");
        return EX_OK;
    }
    printf("\nA step failed. Open in the firewall:\n"
           "  this server, outbound: TCP 443 to api.push.apple.com "
           "(APNs; 2197 also allowed),\n"
           "                         TCP 443 to fcm.googleapis.com and "
           "oauth2.googleapis.com (FCM)\n"
           "  phones, outbound:      TCP 5223 to *.push.apple.com (APNs), "
           "TCP 5228-5230 to mtalk.google.com (FCM)\n"
           "(DNS must resolve these names; a TLS-intercepting proxy breaks "
           "APNs.)\n");
    return EX_CHECK;
}

/* ---- main -------------------------------------------------------------- */

static bool
read_token(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "re");

    if (!f)
        return false;
    bool ok = fgets(out, (int)outlen, f) != NULL;
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return ok && out[0];
}

static size_t
on_file(char *p, size_t size, size_t n, void *arg)
{
    return fwrite(p, size, n, arg) * size;
}

/* backup FILE: GET /api/backup into FILE.part, checked to be a SQLite
 * database, then renamed to FILE (an interrupted download never leaves a
 * FILE that looks complete). */
static int
cmd_backup(struct ctl *c, int argc, char **argv)
{
    char part[4096], url[1024], auth[300], head[16];
    long status = -1;

    if (argc != 1)
        return EX_USAGE;
    if ((size_t)snprintf(part, sizeof(part), "%s.part", argv[0]) >=
        sizeof(part))
        return EX_USAGE;
    FILE *f = fopen(part, "wbe");
    if (!f) {
        fprintf(stderr, "pushpbxctl: %s: %s\n", part, strerror(errno));
        return EX_SERVER;
    }
    fchmod(fileno(f), 0600); /* it holds the HA1 values */
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = NULL;
    snprintf(url, sizeof(url), "%s/api/backup", c->url);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
    hdr = curl_slist_append(hdr, auth);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_file);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s < 300 ? 300L
                                                            : c->timeout_s);
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    else
        fprintf(stderr, "pushpbxctl: %s: %s\n", url, curl_easy_strerror(rc));
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    bool written = fflush(f) == 0 && fsync(fileno(f)) == 0;
    fclose(f);
    f = fopen(part, "rbe");
    bool sqlite = f && fread(head, 1, sizeof(head), f) == sizeof(head) &&
                  memcmp(head, "SQLite format 3", 16) == 0;
    if (f)
        fclose(f);
    if (status != 200 || !written || !sqlite) {
        if (status >= 300) {
            /* The error body ({"error": ...}) went to the file. */
            json_t *j = json_load_file(part, 0, NULL);
            const char *e = json_string_value(json_object_get(j, "error"));
            fprintf(stderr, "pushpbxctl: backup refused: HTTP %ld%s%s\n",
                    status, e ? ": " : "", e ? e : "");
            json_decref(j);
        }
        else if (status == 200)
            fprintf(stderr, "pushpbxctl: the download is not a database\n");
        unlink(part);
        return status == 200 ? EX_SERVER : exit_for(status);
    }
    if (rename(part, argv[0]) < 0) {
        fprintf(stderr, "pushpbxctl: %s: %s\n", argv[0], strerror(errno));
        unlink(part);
        return EX_SERVER;
    }
    printf("backup written to %s\n", argv[0]);
    return EX_OK;
}

static int
cmd_ext(struct ctl *c, int argc, char **argv)
{
    char path[256];

    if (argc >= 1 && strcmp(argv[0], "list") == 0)
        return simple(c, "GET", "/api/extensions", NULL, show_ext_list);
    if (argc < 2)
        return EX_USAGE;
    if (strcmp(argv[0], "add") == 0) {
        /* the number travels in the body; the server checks it */
        json_t *body = json_pack("{s:s}", "number", argv[1]);
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
                json_object_set_new(body, "name", json_string(argv[++i]));
            else if (strcmp(argv[i], "--password") == 0 && i + 1 < argc)
                json_object_set_new(body, "password", json_string(argv[++i]));
            else {
                json_decref(body);
                return EX_USAGE;
            }
        }
        return simple(c, "POST", "/api/extensions", body, show_ext_one);
    }
    if (argc != 2)
        return EX_USAGE;
    if (strcmp(argv[0], "del") == 0) {
        if (!ext_path("/api/extensions/%s", argv[1], path, sizeof(path)))
            return EX_BADREQ;
        return simple(c, "DELETE", path, NULL, NULL);
    }
    if (strcmp(argv[0], "passwd") == 0) {
        if (!ext_path("/api/extensions/%s/password", argv[1], path,
                      sizeof(path)))
            return EX_BADREQ;
        return simple(c, "POST", path, NULL, show_password);
    }
    return EX_USAGE;
}

static int
cmd_prov(struct ctl *c, int argc, char **argv)
{
    char path[256];

    if (argc < 2)
        return EX_USAGE;
    if (strcmp(argv[0], "revoke") != 0 && strcmp(argv[0], "show") != 0)
        return EX_USAGE;
    if (!ext_path("/api/extensions/%s/prov", argv[1], path, sizeof(path)))
        return EX_BADREQ;
    if (strcmp(argv[0], "revoke") == 0 && argc == 2)
        return simple(c, "DELETE", path, NULL, NULL);
    if (strcmp(argv[0], "show") != 0)
        return EX_USAGE;
    bool renew = argc == 3 && strcmp(argv[2], "--new") == 0;
    if (argc > 2 && !renew)
        return EX_USAGE;
    if (!renew) {
        json_t *j;
        long st = call(c, "GET", path, NULL, &j);
        if (st != 404) {
            int ex = report(st, j);
            if (ex == EX_OK)
                c->json ? print_json(j) : show_prov(j);
            json_decref(j);
            return ex;
        }
        json_decref(j); /* no link yet: create one */
    }
    return simple(c, "POST", path, NULL, show_prov);
}

/* reg list [--limit N] [--after EXT]: with --limit one page (the next
 * page's cursor is printed); without, every page (1000 extensions a
 * request) as one table, or with --json as one object {"items": [all],
 * "total", "push_available"} like the unpaginated route of old. */
static int
cmd_reg(struct ctl *c, int argc, char **argv)
{
    unsigned long long limit = 0;
    const char *after = "";
    char fmt[96], path[256], cursor[64];

    if (argc < 1 || strcmp(argv[0], "list") != 0)
        return EX_USAGE;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            if (slice_to_u64(slice_cstr(argv[++i]), 1000, &limit) < 0 ||
                limit == 0) {
                fprintf(stderr, "pushpbxctl: --limit takes 1 to 1000\n");
                return EX_USAGE;
            }
        } else if (strcmp(argv[i], "--after") == 0 && i + 1 < argc) {
            after = argv[++i];
        } else {
            return EX_USAGE;
        }
    }
    bool all = limit == 0;
    snprintf(fmt, sizeof(fmt), "/api/registrations?limit=%llu&after=%%s",
             all ? 1000ULL : limit);
    json_t *merged = NULL;
    int ex = EX_OK;
    bool header = false;
    for (;;) {
        json_t *j;
        if (after[0]) {
            if (!ext_path(fmt, after, path, sizeof(path)))
                return EX_BADREQ;
        } else {
            snprintf(path, sizeof(path), "/api/registrations?limit=%llu",
                     all ? 1000ULL : limit);
        }
        long st = call(c, "GET", path, NULL, &j);
        ex = report(st, j);
        if (ex != EX_OK) {
            json_decref(j);
            break;
        }
        if (!all) {
            if (c->json)
                print_json(j);
            else
                show_reg_list(j);
            json_decref(j);
            break;
        }
        if (c->json) {
            if (!merged)
                merged = json_pack("{s:[], s:O, s:O}", "items", "total",
                                   json_object_get(j, "total"),
                                   "push_available",
                                   json_object_get(j, "push_available"));
            json_array_extend(json_object_get(merged, "items"),
                              json_object_get(j, "items"));
        } else {
            if (!header)
                show_reg_header();
            header = true;
            show_reg_rows(j);
        }
        json_t *next = json_object_get(j, "next");
        bool more = json_is_string(next);
        bool push = json_is_true(json_object_get(j, "push_available"));
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        json_decref(j);
        if (!more) {
            if (!c->json && !push)
                printf("(push devices: not available)\n");
            break;
        }
        after = cursor;
    }
    if (merged) {
        if (ex == EX_OK)
            print_json(merged);
        json_decref(merged);
    }
    return ex;
}

static int
cmd_push(struct ctl *c, int argc, char **argv)
{
    char path[256];

    if (argc == 1 && strcmp(argv[0], "list") == 0)
        return simple(c, "GET", "/api/pushes", NULL, show_push_list);
    if (argc != 2)
        return EX_USAGE;
    if (strcmp(argv[0], "test") == 0) {
        if (!ext_path("/api/extensions/%s/push/test", argv[1], path,
                      sizeof(path)))
            return EX_BADREQ;
        /* the daemon waits for the provider (up to about 12 s) */
        struct ctl slow = *c;
        if (slow.timeout_s < 40)
            slow.timeout_s = 40;
        return simple(&slow, "POST", path, NULL, show_push_test);
    }
    if (strcmp(argv[0], "forget") == 0) {
        if (!ext_path("/api/extensions/%s/push", argv[1], path, sizeof(path)))
            return EX_BADREQ;
        return simple(c, "DELETE", path, NULL, NULL);
    }
    return EX_USAGE;
}

int
main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"url", required_argument, NULL, 'u'},
        {"token", required_argument, NULL, 't'},
        {"token-file", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ctl c = {.timeout_s = 10};
    const char *token = getenv("PUSHPBX_TOKEN");
    /* make run's var/, else the installed daemon's state directory. */
    const char *token_file = "var/admin.token";
    bool token_file_default = true;
    int opt, ex;

    c.url = getenv("PUSHPBX_URL");
    if (!c.url || !c.url[0])
        c.url = "http://127.0.0.1:8080";
    /* "+": stop at the command, its options are its own */
    while ((opt = getopt_long(argc, argv, "+h", lo, NULL)) != -1) {
        switch (opt) {
        case 'u':
            c.url = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'T':
            token_file = optarg;
            token_file_default = false;
            token = NULL;
            break;
        case 'j':
            c.json = true;
            break;
        case 'w': {
            char *end;
            c.timeout_s = strtol(optarg, &end, 10);
            if (*end || c.timeout_s <= 0 || c.timeout_s > 600) {
                usage(stderr);
                return EX_USAGE;
            }
            break;
        }
        case 'h':
            usage(stdout);
            return EX_OK;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EX_USAGE;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *cmd = argv[optind];
    int sub_argc = argc - optind - 1;
    char **sub_argv = argv + optind + 1;
    bool have_token = true;
    if (token && token[0])
        snprintf(c.token, sizeof(c.token), "%s", token);
    else if (!read_token(token_file, c.token, sizeof(c.token)) &&
             !(token_file_default &&
               read_token(token_file = "/var/lib/pushpbx/admin.token",
                          c.token, sizeof(c.token))))
        have_token = false;
    if (strcmp(cmd, "check") == 0) {
        /* no token: the network steps only, no daemon needed */
        ex = cmd_check(&c, have_token, argc - optind, argv + optind);
    } else {
        if (!have_token)
            fprintf(stderr,
                    "pushpbxctl: no token (--token, $PUSHPBX_TOKEN or "
                    "%s)\n",
                    token_file);
        if (strcmp(cmd, "ext") == 0)
            ex = cmd_ext(&c, sub_argc, sub_argv);
        else if (strcmp(cmd, "reg") == 0)
            ex = cmd_reg(&c, sub_argc, sub_argv);
        else if (strcmp(cmd, "calls") == 0 && sub_argc == 0)
            ex = simple(&c, "GET", "/api/calls", NULL, show_calls);
        else if (strcmp(cmd, "nodes") == 0 && sub_argc == 0)
            ex = simple(&c, "GET", "/api/nodes", NULL, show_nodes);
        else if (strcmp(cmd, "push") == 0)
            ex = cmd_push(&c, sub_argc, sub_argv);
        else if (strcmp(cmd, "prov") == 0)
            ex = cmd_prov(&c, sub_argc, sub_argv);
        else if (strcmp(cmd, "backup") == 0)
            ex = cmd_backup(&c, sub_argc, sub_argv);
        else
            ex = EX_USAGE;
    }
    if (ex == EX_USAGE)
        usage(stderr);
    curl_global_cleanup();
    return ex;
}
