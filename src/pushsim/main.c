/*
 * pushsim: an emulator of Apple APNs and Google FCM (HTTP v1 + OAuth) for
 * tests and the demo. The real push clients are pointed at it by URL; it
 * checks what they send as the real services do, answers with their status
 * codes and bodies, injects faults on command and tells harnesses, through
 * a small control API, which pushes arrived. The command line, endpoints
 * and control API follow the push contract shared with src/push (see
 * pushsim --help and the comments of psim.c and control.c).
 *
 * Threads: main runs the libuv loop with the HTTPS side (h2.c); the control
 * API runs on libmicrohttpd's thread (control.c). SIGINT/SIGTERM stop the
 * loop, then everything is freed and the process exits 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/xmalloc.h"
#include "jose/jose.h"
#include "pushsim/pushsim_int.h"

struct opts {
    const char *listen, *control, *cert, *key, *cert_out, *ready, *log;
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: pushsim --listen IP:PORT --control IP:PORT [options]\n"
               "  --cert FILE --key FILE   TLS certificate and key (PEM); "
               "default: a\n"
               "                           self-signed P-256 cert for "
               "localhost/127.0.0.1\n"
               "  --cert-out FILE          write the certificate in use (PEM)\n"
               "  --ready-file FILE        write "
               "{\"pid\":N,\"https_port\":P,\"control_port\":Q}\n"
               "  --apns-key KID:TEAM:PEM  APNs ES256 key (repeatable)\n"
               "  --apns-topic BUNDLE      allowed bundle id (repeatable; none "
               "= any)\n"
               "  --apns-client-ca FILE    ask for APNs client certificates "
               "and verify\n"
               "                           them against this CA (PEM): "
               "certificate trust,\n"
               "                           topics from the subject UID\n"
               "  --fcm-account FILE       service-account JSON (repeatable)\n"
               "  --fcm-token-ttl SECONDS  access token lifetime (3600)\n"
               "  --log FILE               JSONL, one line per push\n");
}

static int
add_apns_key(struct psim *ps, const char *arg)
{
    const char *c1 = strchr(arg, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    struct psim_apns_key *k;

    if (c2 == NULL || c1 == arg || c2 == c1 + 1 || c2[1] == '\0' ||
        (size_t)(c1 - arg) >= sizeof(k->kid) ||
        (size_t)(c2 - c1 - 1) >= sizeof(k->team) || ps->nkeys >= PSIM_MAX_KEYS)
        return -EINVAL;
    k = &ps->keys[ps->nkeys];
    memcpy(k->kid, arg, (size_t)(c1 - arg));
    k->kid[c1 - arg] = '\0';
    memcpy(k->team, c1 + 1, (size_t)(c2 - c1 - 1));
    k->team[c2 - c1 - 1] = '\0';
    k->key = jose_key_load_file(c2 + 1, false, NULL, 0);
    if (k->key == NULL || !EVP_PKEY_is_a(k->key, "EC")) {
        EVP_PKEY_free(k->key);
        return -EINVAL;
    }
    ps->nkeys++;
    return 0;
}

static int
add_account(struct psim *ps, const char *path)
{
    json_error_t jerr;
    json_t *o = json_load_file(path, 0, &jerr);
    const char *proj = json_string_value(json_object_get(o, "project_id"));
    const char *email = json_string_value(json_object_get(o, "client_email"));
    const char *pem = json_string_value(json_object_get(o, "private_key"));
    const char *uri = json_string_value(json_object_get(o, "token_uri"));
    struct psim_account *a;
    int rc = -EINVAL;

    if (proj == NULL || email == NULL || pem == NULL ||
        ps->naccounts >= PSIM_MAX_ACCOUNTS)
        goto out;
    a = &ps->accounts[ps->naccounts];
    a->key = jose_key_load_pem(pem, strlen(pem), false);
    if (a->key == NULL || !EVP_PKEY_is_a(a->key, "RSA")) {
        EVP_PKEY_free(a->key);
        a->key = NULL;
        goto out;
    }
    a->project = xstrdup(proj);
    a->client_email = xstrdup(email);
    a->token_uri = uri ? xstrdup(uri) : NULL;
    ps->naccounts++;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

static bool
add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    bool ok;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return false;
    ok = X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* Self-signed EC P-256 certificate for localhost and 127.0.0.1. */
static int
make_cert(X509 **out_cert, EVP_PKEY **out_key)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    bool ok;

    if (key == NULL || x == NULL)
        goto fail;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 86400);
    X509_set_pubkey(x, key);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, name);
    ok = add_ext(x, NID_basic_constraints, "critical,CA:TRUE") &&
         add_ext(x, NID_subject_key_identifier, "hash") &&
         add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign") &&
         add_ext(x, NID_ext_key_usage, "serverAuth") &&
         add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1") &&
         X509_sign(x, key, EVP_sha256()) > 0;
    if (!ok)
        goto fail;
    *out_cert = x;
    *out_key = key;
    return 0;
fail:
    X509_free(x);
    EVP_PKEY_free(key);
    return -EINVAL;
}

static int
load_cert(const char *cert_file, const char *key_file, X509 **cert,
          EVP_PKEY **key)
{
    FILE *f = fopen(cert_file, "r");

    if (f == NULL)
        return -errno;
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    *key = jose_key_load_file(key_file, true, NULL, 0);
    if (*cert == NULL || *key == NULL) {
        X509_free(*cert);
        EVP_PKEY_free(*key);
        return -EINVAL;
    }
    return 0;
}

static int
write_file_atomic(const char *path, const char *text, X509 *cert)
{
    char tmp[4096];
    FILE *f;
    int ok;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return -ENAMETOOLONG;
    f = fopen(tmp, "w");
    if (f == NULL)
        return -errno;
    ok = cert ? PEM_write_X509(f, cert) == 1 : fputs(text, f) >= 0;
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -EIO;
    }
    return 0;
}

/* Does path hold at least one PEM certificate? */
static bool
ca_loads(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x;

    if (f == NULL)
        return false;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    X509_free(x);
    ERR_clear_error();
    return x != NULL;
}

struct app {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm;
    struct psim_server *srv;
};

static void
on_signal(uv_signal_t *s, int signum)
{
    struct app *app = s->data;

    psim_server_stop(app->srv);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
}

static int
parse_args(int argc, char **argv, struct opts *o, struct psim *ps)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"control", required_argument, NULL, 'c'},
        {"cert", required_argument, NULL, 'C'},
        {"key", required_argument, NULL, 'K'},
        {"cert-out", required_argument, NULL, 'O'},
        {"ready-file", required_argument, NULL, 'r'},
        {"apns-key", required_argument, NULL, 'a'},
        {"apns-topic", required_argument, NULL, 't'},
        {"apns-client-ca", required_argument, NULL, 'A'},
        {"fcm-account", required_argument, NULL, 'f'},
        {"fcm-token-ttl", required_argument, NULL, 'T'},
        {"log", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long long ttl;
    int ch;

    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            o->listen = optarg;
            break;
        case 'c':
            o->control = optarg;
            break;
        case 'C':
            o->cert = optarg;
            break;
        case 'K':
            o->key = optarg;
            break;
        case 'O':
            o->cert_out = optarg;
            break;
        case 'r':
            o->ready = optarg;
            break;
        case 'L':
            o->log = optarg;
            break;
        case 'a':
            if (add_apns_key(ps, optarg) < 0) {
                fprintf(stderr,
                        "pushsim: --apns-key %s: bad KID:TEAM:PEM "
                        "or not an EC key\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case 'A':
            if (!ca_loads(optarg)) {
                fprintf(stderr,
                        "pushsim: --apns-client-ca %s: no PEM certificate "
                        "in it\n",
                        optarg);
                return -EINVAL;
            }
            free(ps->apns_client_ca);
            ps->apns_client_ca = xstrdup(optarg);
            break;
        case 't':
            if (ps->ntopics >= PSIM_MAX_TOPICS)
                return -EINVAL;
            ps->topics[ps->ntopics++] = xstrdup(optarg);
            break;
        case 'f':
            if (add_account(ps, optarg) < 0) {
                fprintf(stderr,
                        "pushsim: --fcm-account %s: not a service "
                        "account with an RSA private_key\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case 'T':
            if (slice_to_u64(slice_cstr(optarg), 86400, &ttl) < 0 || ttl == 0) {
                fprintf(stderr, "pushsim: --fcm-token-ttl: 1..86400\n");
                return -EINVAL;
            }
            ps->fcm_token_ttl_s = (unsigned)ttl;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (o->listen == NULL || o->control == NULL || optind != argc ||
        (o->cert == NULL) != (o->key == NULL)) {
        usage(stderr);
        return -EINVAL;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct opts o = {0};
    struct psim *ps = xmalloc(sizeof(*ps));
    struct psim_control *ctl = NULL;
    struct app app = {0};
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    FILE *log = NULL;
    int https_port = 0, control_port = 0, rc, status = 1;
    char ready[128];

    signal(SIGPIPE, SIG_IGN);
    psim_init(ps, NULL);
    uv_loop_init(&app.loop);
    if (parse_args(argc, argv, &o, ps) < 0)
        goto out;
    if (o.log != NULL) {
        log = fopen(o.log, "a");
        if (log == NULL) {
            fprintf(stderr, "pushsim: %s: %s\n", o.log, strerror(errno));
            goto out;
        }
        setvbuf(log, NULL, _IOFBF, 1 << 20);
        ps->state.log = log;
    }
    rc =
        o.cert ? load_cert(o.cert, o.key, &cert, &key) : make_cert(&cert, &key);
    if (rc < 0) {
        fprintf(stderr, "pushsim: cannot %s TLS certificate\n",
                o.cert ? "load" : "make");
        goto out;
    }
    if (o.cert_out != NULL && write_file_atomic(o.cert_out, NULL, cert) < 0) {
        fprintf(stderr, "pushsim: cannot write %s\n", o.cert_out);
        goto out;
    }
    rc = psim_server_start(ps, &app.loop, o.listen, cert, key, &app.srv,
                           &https_port);
    if (rc < 0) {
        fprintf(stderr, "pushsim: --listen %s: %s\n", o.listen,
                rc == -EINVAL ? "bad address or TLS setup" : uv_strerror(rc));
        goto out;
    }
    ps->https_port = https_port;
    rc = psim_control_start(ps, o.control, &ctl, &control_port);
    if (rc < 0) {
        fprintf(stderr, "pushsim: --control %s: cannot listen\n", o.control);
        psim_server_stop(app.srv);
        uv_run(&app.loop, UV_RUN_DEFAULT);
        goto out;
    }
    uv_signal_init(&app.loop, &app.sigint);
    uv_signal_init(&app.loop, &app.sigterm);
    app.sigint.data = app.sigterm.data = &app;
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    snprintf(ready, sizeof(ready),
             "{\"pid\":%d,\"https_port\":%d,\"control_port\":%d}\n",
             (int)getpid(), https_port, control_port);
    if (o.ready != NULL && write_file_atomic(o.ready, ready, NULL) < 0) {
        fprintf(stderr, "pushsim: cannot write %s\n", o.ready);
        on_signal(&app.sigint, SIGTERM);
    } else {
        fprintf(stderr, "pushsim: https=127.0.0.1:%d control=%d ready\n",
                https_port, control_port);
        status = 0;
    }
    uv_run(&app.loop, UV_RUN_DEFAULT);
out:
    psim_control_stop(ctl);
    psim_server_free(app.srv);
    uv_loop_close(&app.loop);
    X509_free(cert);
    EVP_PKEY_free(key);
    psim_state_flush_log(&ps->state);
    psim_fini(ps);
    free(ps);
    if (log != NULL)
        fclose(log);
    return status;
}
