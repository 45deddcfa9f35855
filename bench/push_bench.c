/*
 * push_bench: throughput and queueing latency of the push clients against
 * pushsim, one HTTP/2 connection per provider.
 *
 *   push_bench --pushsim build/src/pushsim/pushsim [-n 20000] [-w 500]
 *              [--provider apns|fcm|both]
 *
 * It makes an EC P-256 key and an RSA service account in a temp dir,
 * starts pushsim on 127.0.0.1 ephemeral ports, then per provider keeps w
 * pushes outstanding until n are done and reports pushes/s and the p50/p99
 * of "push_send called" -> "request about to be written" (push_result
 * write_us, from curl's PRETRANSFER time) and of the full latency. Run it
 * on a Release build; pushsim shares the machine, so the figure is a lower
 * bound of the client alone. Goal (issue): >= 5,000 pushes/s. "client
 * CPU" is this process's CPU time per push (the client alone; with -w 1
 * the cost of one push on an idle connection).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <uv.h>

#include "base/buf.h"
#include "push/push.h"

struct run {
    struct push_client *pc;
    enum push_provider prov;
    unsigned n, window, sent, done, ok;
    uint64_t *write_us, *lat_us;
    char token[80];
    uint64_t t0;
};

static void send_more(struct run *r);

static void
on_done(const struct push_result *res, void *arg)
{
    struct run *r = arg;

    r->write_us[r->done] = res->write_us;
    r->lat_us[r->done] = res->latency_us;
    r->done++;
    if (res->status == PUSH_DELIVERED)
        r->ok++;
    send_more(r);
}

static void
send_more(struct run *r)
{
    while (r->sent < r->n && r->sent - r->done < r->window) {
        char cid[32];
        struct push_msg m = {
            .provider = r->prov,
            .token = r->token,
            .type = PUSH_CALL,
            .call_id = cid,
            .from = "101",
            .from_name = "Alice",
            .to = "100",
            .expires_at_s = (int64_t)time(NULL) + 60,
        };
        snprintf(cid, sizeof(cid), "bench-%u", r->sent);
        if (push_send(r->pc, &m, on_done, r) < 0) {
            fprintf(stderr, "push_send refused at %u\n", r->sent);
            exit(1);
        }
        r->sent++;
    }
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t
pct(uint64_t *v, unsigned n, double p)
{
    return v[(unsigned)((n - 1) * p)];
}

static void
write_keys(const char *dir, int https_port)
{
    char path[512];
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *rsa = EVP_RSA_gen(2048);
    FILE *f;
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long len;

    snprintf(path, sizeof(path), "%s/apns.p8", dir);
    f = fopen(path, "w");
    PEM_write_PrivateKey(f, ec, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    PEM_write_bio_PrivateKey(bio, rsa, NULL, NULL, 0, NULL, NULL);
    len = BIO_get_mem_data(bio, &pem);
    json_t *sa = json_pack("{s:s, s:s, s:s, s:s%, s:s, s:s}", "type",
                           "service_account", "project_id", "bench-proj",
                           "private_key_id", "k1", "private_key", pem,
                           (size_t)len, "client_email",
                           "svc@bench-proj.iam.gserviceaccount.com",
                           "token_uri", "");
    char uri[128];
    snprintf(uri, sizeof(uri), "https://127.0.0.1:%d/token", https_port);
    json_object_set_new(sa, "token_uri", json_string(uri));
    snprintf(path, sizeof(path), "%s/sa.json", dir);
    json_dump_file(sa, path, 0);
    json_decref(sa);
    BIO_free(bio);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

static int
free_port(void)
{
    /* pushsim must know its HTTPS port before reading the service account
     * whose token_uri names it: take one from the kernel and release it. */
    uv_loop_t loop;
    uv_tcp_t t;
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = sizeof(got), port;

    uv_loop_init(&loop);
    uv_tcp_init(&loop, &t);
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
    port = ntohs(((struct sockaddr_in *)&got)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return port;
}

static size_t
collect(char *d, size_t s, size_t n, void *arg)
{
    return buf_append(arg, d, s * n) == 0 ? s * n : 0;
}

static void
print_stats(int control_port)
{
    char url[64];
    struct buf out;
    CURL *e = curl_easy_init();

    buf_init(&out, 65536);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/stats", control_port);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&out);
    if (curl_easy_perform(e) == CURLE_OK && out.data)
        printf("pushsim /stats: %s\n", out.data);
    curl_easy_cleanup(e);
    buf_fini(&out);
}

int
main(int argc, char **argv)
{
    const char *pushsim = NULL, *which = "both";
    unsigned n = 20000, window = 500;
    char dir[] = "/tmp/push_bench_XXXXXX", path[600], arg[700];
    int ch, https_port, control_port = 0;

    static const struct option opts[] = {
        { "pushsim", required_argument, NULL, 's' },
        { "provider", required_argument, NULL, 'p' },
        { 0 },
    };
    while ((ch = getopt_long(argc, argv, "n:w:", opts, NULL)) != -1) {
        if (ch == 's')
            pushsim = optarg;
        else if (ch == 'p')
            which = optarg;
        else if (ch == 'n')
            n = (unsigned)strtoul(optarg, NULL, 10);
        else if (ch == 'w')
            window = (unsigned)strtoul(optarg, NULL, 10);
        else
            return 2;
    }
    if (pushsim == NULL || n == 0 || window == 0) {
        fprintf(stderr, "usage: push_bench --pushsim PATH [-n N] [-w W] "
                        "[--provider apns|fcm|both]\n");
        return 2;
    }
    if (mkdtemp(dir) == NULL)
        return 1;
    https_port = free_port();
    write_keys(dir, https_port);

    pid_t pid = fork();
    if (pid == 0) {
        char listen[32], key[700], sa[600], cert[600], ready[600];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", https_port);
        snprintf(key, sizeof(key), "KEYID12345:TEAM123456:%s/apns.p8", dir);
        snprintf(sa, sizeof(sa), "%s/sa.json", dir);
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
        snprintf(ready, sizeof(ready), "%s/ready.json", dir);
        execl(pushsim, pushsim, "--listen", listen, "--control",
              "127.0.0.1:0", "--cert-out", cert, "--ready-file", ready,
              "--apns-key", key, "--apns-topic", "com.example.bench",
              "--fcm-account", sa, (char *)NULL);
        _exit(127);
    }
    snprintf(path, sizeof(path), "%s/ready.json", dir);
    for (int i = 0; i < 500 && control_port == 0; i++) {
        json_t *r = json_load_file(path, 0, NULL);
        control_port = (int)json_integer_value(json_object_get(r,
                                                               "control_port"));
        json_decref(r);
        if (control_port == 0)
            usleep(20000);
    }
    if (control_port == 0) {
        fprintf(stderr, "pushsim did not start\n");
        kill(pid, SIGTERM);
        return 1;
    }

    uv_loop_t *loop = uv_default_loop();
    struct push_conf conf = { 0 };
    char url[64], keyf[600], saf[600], ca[600], err[512];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", https_port);
    snprintf(keyf, sizeof(keyf), "%s/apns.p8", dir);
    snprintf(saf, sizeof(saf), "%s/sa.json", dir);
    snprintf(ca, sizeof(ca), "%s/cert.pem", dir);
    conf.apns = (struct push_apns_conf){ .enabled = true, .base_url = url,
                                         .key_file = keyf,
                                         .key_id = "KEYID12345",
                                         .team_id = "TEAM123456",
                                         .topic = "com.example.bench",
                                         .ca_file = ca };
    conf.fcm = (struct push_fcm_conf){ .enabled = true,
                                       .service_account_file = saf,
                                       .base_url = url, .ca_file = ca };
    conf.queue_max = window + 16;
    struct push_client *pc = push_client_new(loop, &conf, err, sizeof(err));
    if (pc == NULL) {
        fprintf(stderr, "push_client_new: %s\n", err);
        kill(pid, SIGTERM);
        return 1;
    }
    printf("push_bench: n=%u window=%u (pushsim pid %d)\n", n, window, pid);
    for (int p = 0; p < 2; p++) {
        if (strcmp(which, "both") != 0 &&
            strcmp(which, push_provider_name((enum push_provider)p)) != 0)
            continue;
        struct run r = { .pc = pc, .prov = (enum push_provider)p,
                         .n = n, .window = window };
        r.write_us = calloc(n, sizeof(uint64_t));
        r.lat_us = calloc(n, sizeof(uint64_t));
        snprintf(r.token, sizeof(r.token), "%s",
                 p == PUSH_APNS ? "00112233445566778899aabbccddeeff"
                                : "bench-fcm-token");
        /* Warm up: connection, TLS, JWT / OAuth token. */
        r.n = 1;
        send_more(&r);
        while (r.done < 1)
            uv_run(loop, UV_RUN_ONCE);
        r = (struct run){ .pc = pc, .prov = r.prov, .n = n,
                          .window = window, .write_us = r.write_us,
                          .lat_us = r.lat_us };
        snprintf(r.token, sizeof(r.token), "%s",
                 p == PUSH_APNS ? "00112233445566778899aabbccddeeff"
                                : "bench-fcm-token");
        uint64_t t0 = uv_hrtime();
        struct timespec c0, c1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        send_more(&r);
        while (r.done < r.n)
            uv_run(loop, UV_RUN_ONCE);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        double secs = (double)(uv_hrtime() - t0) / 1e9;
        /* The client's own CPU (this process; pushsim is another), a
         * figure that does not depend on how loaded the machine is. */
        double cpu_us = ((double)(c1.tv_sec - c0.tv_sec) * 1e6 +
                         (double)(c1.tv_nsec - c0.tv_nsec) / 1e3) / n;
        qsort(r.write_us, n, sizeof(uint64_t), cmp_u64);
        qsort(r.lat_us, n, sizeof(uint64_t), cmp_u64);
        printf("%-4s: %u pushes (%u delivered) in %.3f s = %.0f pushes/s; "
               "send->write p50 %.2f ms p99 %.2f ms; send->done p50 %.2f "
               "ms p99 %.2f ms; client CPU %.0f us/push\n",
               push_provider_name(r.prov), n, r.ok, secs, n / secs,
               pct(r.write_us, n, 0.5) / 1000.0,
               pct(r.write_us, n, 0.99) / 1000.0,
               pct(r.lat_us, n, 0.5) / 1000.0,
               pct(r.lat_us, n, 0.99) / 1000.0, cpu_us);
        free(r.write_us);
        free(r.lat_us);
    }
    print_stats(control_port);
    push_client_free(pc);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    snprintf(arg, sizeof(arg), "rm -rf '%s'", dir);
    if (system(arg) != 0)
        return 1;
    return 0;
}
