/*
 * push-send: drive the push client from a script. Flags configure the
 * providers; stdin carries commands, one per line; every completion is
 * printed as one JSON line on stdout. The integration tests
 * (tests/integration/push) talk to pushsim through it, and it is handy
 * for checking real credentials by hand:
 *
 *   echo "send apns <token> TEAMID.com.example.app.voip call" |
 *     push-send --apns-key AuthKey.p8 --apns-key-id K --apns-team T
 *
 * Commands:
 *   send PROVIDER TOKEN PARAM TYPE [COUNT [RING_S [FROM_NAME [CALL_ID
 *        [PREVIEW...]]]]]
 *        PARAM "-" = none; TYPE call|missed|answered_elsewhere|message;
 *        COUNT pushes at once (call ids "call-<seq>-<i>", or CALL_ID when
 *        COUNT is 1); RING_S 0 = no expiry. message: CALL_ID is the
 *        message id, RING_S its lifetime, PREVIEW the text (words joined
 *        by a space; none or "-" = no preview).
 *   wait          block until no push is pending, print {"event":"idle"}
 *   sleep MS      pause reading commands
 *   quit          cancel what is pending and exit
 * At end of input it waits for pending pushes, then exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "base/buf.h"
#include "base/log.h"
#include "push/push.h"

struct tool {
    uv_loop_t *loop;
    struct push_client *pc;
    uv_stream_t *in;
    uv_pipe_t pipe;
    uv_tty_t tty;
    uv_timer_t sleep_timer;
    uv_timer_t kick; /* process() off the push callback's stack */
    struct buf input;
    size_t consumed;
    bool eof, waiting, sleeping, done;
    unsigned seq;
    unsigned outstanding;
};

struct ctx {
    struct tool *t;
    unsigned seq;
    char call_id[64];
};

static void process(struct tool *t);

static void
on_kick(uv_timer_t *h)
{
    process(h->data);
}

static void
on_done(const struct push_result *r, void *arg)
{
    struct ctx *x = arg;
    struct tool *t = x->t;
    json_t *o = json_pack(
        "{s:s, s:i, s:s, s:s, s:s, s:I, s:s, s:i, s:f, s:I, s:s}", "event",
        "result", "seq", (int)x->seq, "call_id", x->call_id, "provider",
        push_provider_name(r->provider), "status", push_status_name(r->status),
        "http", (json_int_t)r->http_status, "reason", r->reason, "attempts",
        (int)r->attempts, "latency_ms", (double)r->latency_us / 1000.0,
        "write_us", (json_int_t)r->write_us, "id", r->id);
    char *s = json_dumps(o, JSON_COMPACT);

    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
    free(x);
    t->outstanding--;
    if (t->waiting && t->outstanding == 0) {
        t->waiting = false;
        printf("{\"event\":\"idle\"}\n");
        fflush(stdout);
    }
    /* push_client_free must not run inside a push callback. */
    if (t->outstanding == 0 && !t->done)
        uv_timer_start(&t->kick, on_kick, 0, 0);
}

static void
print_error(unsigned seq, const char *what)
{
    json_t *o = json_pack("{s:s, s:i, s:s}", "event", "error", "seq",
                          (int)seq, "error", what);
    char *s = json_dumps(o, JSON_COMPACT);

    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(o);
}

static int
parse_type(const char *s, enum push_type *out)
{
    if (strcmp(s, "call") == 0)
        *out = PUSH_CALL;
    else if (strcmp(s, "missed") == 0)
        *out = PUSH_MISSED;
    else if (strcmp(s, "answered_elsewhere") == 0)
        *out = PUSH_ANSWERED_ELSEWHERE;
    else if (strcmp(s, "message") == 0)
        *out = PUSH_MESSAGE;
    else
        return -EINVAL;
    return 0;
}

static long
num(const char *s, long def)
{
    char *end;
    long v;

    if (s == NULL)
        return def;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s)
        return def;
    return v;
}

static void
cmd_send(struct tool *t, char **argv, int argc)
{
    struct push_msg m = { 0 };
    unsigned seq = ++t->seq;
    long count, ring;

    if (argc < 5) {
        print_error(seq, "usage: send PROVIDER TOKEN PARAM TYPE [COUNT "
                         "[RING_S [FROM_NAME]]]");
        return;
    }
    if (strcmp(argv[1], "apns") == 0)
        m.provider = PUSH_APNS;
    else if (strcmp(argv[1], "fcm") == 0)
        m.provider = PUSH_FCM;
    else {
        print_error(seq, "provider must be apns or fcm");
        return;
    }
    m.token = argv[2];
    m.param = strcmp(argv[3], "-") == 0 ? NULL : argv[3];
    if (parse_type(argv[4], &m.type) < 0) {
        print_error(seq, "bad type");
        return;
    }
    count = num(argc > 5 ? argv[5] : NULL, 1);
    ring = num(argc > 6 ? argv[6] : NULL, 30);
    m.from = "101";
    m.from_name = argc > 7 ? argv[7] : "Alice";
    m.to = "100";
    m.expires_at_s = ring > 0 ? (int64_t)time(NULL) + ring : 0;
    /* message: CALL_ID is the message id, then the preview words (joined
     * by one space; none or "-" = no preview). */
    char preview[1024] = "";
    if (m.type == PUSH_MESSAGE) {
        m.content_type = "text/plain";
        size_t pl = 0;
        for (int k = 9; k < argc; k++) {
            int n = snprintf(preview + pl, sizeof(preview) - pl, "%s%s",
                             k > 9 ? " " : "", argv[k]);
            if (n < 0 || (size_t)n >= sizeof(preview) - pl)
                break;
            pl += (size_t)n;
        }
        if (pl > 0 && strcmp(preview, "-") != 0) {
            m.preview = preview;
            m.preview_len = pl;
        }
    }
    for (long i = 0; i < count; i++) {
        struct ctx *x = calloc(1, sizeof(*x));
        int rc;

        x->t = t;
        x->seq = seq;
        if (argc > 8 && count == 1)
            snprintf(x->call_id, sizeof(x->call_id), "%s", argv[8]);
        else
            snprintf(x->call_id, sizeof(x->call_id), "call-%u-%ld", seq, i);
        m.call_id = x->call_id;
        m.message_id = x->call_id;
        rc = push_send(t->pc, &m, on_done, x);
        if (rc < 0) {
            print_error(seq, push_strerror(rc));
            free(x);
            continue;
        }
        t->outstanding++;
    }
}

static void
on_sleep_done(uv_timer_t *h)
{
    struct tool *t = h->data;

    t->sleeping = false;
    process(t);
}

static void
on_closed(uv_handle_t *h)
{
}

static void
shutdown_tool(struct tool *t)
{
    t->done = true;
    if (t->in) {
        uv_read_stop(t->in);
        uv_close((uv_handle_t *)t->in, on_closed);
        t->in = NULL;
    }
    uv_close((uv_handle_t *)&t->sleep_timer, on_closed);
    uv_close((uv_handle_t *)&t->kick, on_closed);
    push_client_free(t->pc);
    t->pc = NULL;
}

/* Run complete lines until a wait/sleep blocks or input runs out. */
static void
process(struct tool *t)
{
    while (!t->waiting && !t->sleeping && !t->done) {
        char *start = t->input.data + t->consumed;
        char *nl = memchr(start, '\n', t->input.len - t->consumed);
        char *argv[16];
        int argc = 0;

        if (nl == NULL) {
            if (t->eof && t->outstanding == 0)
                shutdown_tool(t);
            return;
        }
        *nl = '\0';
        t->consumed = (size_t)(nl - t->input.data) + 1;
        for (char *p = start; *p && argc < 16;) {
            while (*p == ' ' || *p == '\t' || *p == '\r')
                p++;
            if (*p == '\0')
                break;
            argv[argc++] = p;
            while (*p && *p != ' ' && *p != '\t' && *p != '\r')
                p++;
            if (*p)
                *p++ = '\0';
        }
        if (argc == 0 || argv[0][0] == '#')
            continue;
        if (strcmp(argv[0], "send") == 0) {
            cmd_send(t, argv, argc);
        } else if (strcmp(argv[0], "wait") == 0) {
            if (t->outstanding > 0) {
                t->waiting = true;
            } else {
                printf("{\"event\":\"idle\"}\n");
                fflush(stdout);
            }
        } else if (strcmp(argv[0], "sleep") == 0) {
            t->sleeping = true;
            uv_timer_start(&t->sleep_timer, on_sleep_done,
                           (uint64_t)num(argc > 1 ? argv[1] : NULL, 0), 0);
        } else if (strcmp(argv[0], "quit") == 0) {
            shutdown_tool(t);
        } else {
            print_error(t->seq, "unknown command");
        }
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char chunk[65536];

    b->base = chunk;
    b->len = sizeof(chunk);
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct tool *t = s->data;

    if (n > 0) {
        buf_append(&t->input, b->base, (size_t)n);
    } else if (n < 0) {
        t->eof = true;
        uv_read_stop(s);
        /* A last line without '\n' still counts. */
        if (t->input.len > t->consumed &&
            t->input.data[t->input.len - 1] != '\n')
            buf_append(&t->input, "\n", 1);
    }
    process(t);
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: push-send [--apns-url URL] [--apns-key P8 --apns-key-id "
            "ID --apns-team ID]\n"
            "         [--apns-cert PEM --apns-cert-key PEM] [--apns-topic "
            "BUNDLE] [--apns-sandbox]\n"
            "         [--fcm-account JSON] [--fcm-url URL] [--fcm-token-uri "
            "URL] [--ca PEM]\n"
            "         [--timeout-ms N] [--queue N] [--max-attempts N] "
            "[--backoff-ms N]\n"
            "         [--backoff-max-ms N] [--log-level L]  < commands\n");
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "apns-url", required_argument, NULL, 'u' },
        { "apns-key", required_argument, NULL, 'k' },
        { "apns-key-id", required_argument, NULL, 'i' },
        { "apns-team", required_argument, NULL, 't' },
        { "apns-topic", required_argument, NULL, 'b' },
        { "apns-cert", required_argument, NULL, 'c' },
        { "apns-cert-key", required_argument, NULL, 'K' },
        { "apns-sandbox", no_argument, NULL, 'S' },
        { "fcm-account", required_argument, NULL, 'f' },
        { "fcm-url", required_argument, NULL, 'F' },
        { "fcm-token-uri", required_argument, NULL, 'T' },
        { "ca", required_argument, NULL, 'a' },
        { "timeout-ms", required_argument, NULL, 'o' },
        { "queue", required_argument, NULL, 'q' },
        { "max-attempts", required_argument, NULL, 'm' },
        { "backoff-ms", required_argument, NULL, 'B' },
        { "backoff-max-ms", required_argument, NULL, 'M' },
        { "log-level", required_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    struct push_conf conf = { 0 };
    struct tool t = { 0 };
    char err[512];
    int ch;

    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'u': conf.apns.base_url = optarg; break;
        case 'k': conf.apns.key_file = optarg; conf.apns.enabled = true; break;
        case 'i': conf.apns.key_id = optarg; break;
        case 't': conf.apns.team_id = optarg; break;
        case 'b': conf.apns.topic = optarg; break;
        case 'c': conf.apns.cert_file = optarg; conf.apns.enabled = true; break;
        case 'K': conf.apns.cert_key_file = optarg; break;
        case 'S': conf.apns.sandbox = true; break;
        case 'f':
            conf.fcm.service_account_file = optarg;
            conf.fcm.enabled = true;
            break;
        case 'F': conf.fcm.base_url = optarg; break;
        case 'T': conf.fcm.token_uri = optarg; break;
        case 'a': conf.apns.ca_file = conf.fcm.ca_file = optarg; break;
        case 'o':
            conf.apns.timeout_ms = conf.fcm.timeout_ms =
                (unsigned)num(optarg, 0);
            break;
        case 'q': conf.queue_max = (unsigned)num(optarg, 0); break;
        case 'm': conf.max_attempts = (unsigned)num(optarg, 0); break;
        case 'B': conf.backoff_initial_ms = (unsigned)num(optarg, 0); break;
        case 'M': conf.backoff_max_ms = (unsigned)num(optarg, 0); break;
        case 'l':
            if (log_level_parse(optarg, &log_level) < 0) {
                usage();
                return 2;
            }
            break;
        default:
            usage();
            return ch == 'h' ? 0 : 2;
        }
    }
    t.loop = uv_default_loop();
    t.pc = push_client_new(t.loop, &conf, err, sizeof(err));
    if (t.pc == NULL) {
        fprintf(stderr, "push-send: %s\n", err);
        return 1;
    }
    buf_init(&t.input, 0);
    uv_timer_init(t.loop, &t.sleep_timer);
    t.sleep_timer.data = &t;
    uv_timer_init(t.loop, &t.kick);
    t.kick.data = &t;
    if (uv_guess_handle(0) == UV_TTY) {
        uv_tty_init(t.loop, &t.tty, 0, 1);
        t.in = (uv_stream_t *)&t.tty;
    } else {
        uv_pipe_init(t.loop, &t.pipe, 0);
        if (uv_pipe_open(&t.pipe, 0) != 0) {
            fprintf(stderr, "push-send: stdin must be a pipe or a tty\n");
            return 1;
        }
        t.in = (uv_stream_t *)&t.pipe;
    }
    t.in->data = &t;
    uv_read_start(t.in, on_alloc, on_read);
    uv_run(t.loop, UV_RUN_DEFAULT);
    uv_loop_close(t.loop);
    buf_fini(&t.input);
    return 0;
}
