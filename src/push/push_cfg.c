/*
 * push/push_cfg: option tables for [apns], [fcm] and [push]; see
 * push_cfg.h. The help texts are the reference (`pushpbx --help-config`,
 * docs/configuration.md). Cross-field rules (an enabled provider needs its
 * credentials) are checked in the finish hooks so --check-config catches
 * them; whether the files are readable is checked when the client starts.
 */
#include "push/push_cfg.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const struct cfg_option apns_options[] = {
    {.key = "enabled",
     .type = CFG_BOOL,
     .def = "no",
     .offset = offsetof(struct push_apns_cfg, enabled),
     .help = "Send pushes to iOS devices (pn-provider=apns). REGISTERs "
             "naming apns get 555 while this is off."},
    {.key = "base_url",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct push_apns_cfg, base_url),
     .help = "APNs server URL. Empty: Apple production, or the sandbox "
             "when sandbox = yes. Point it at pushsim for tests and demos."},
    {.key = "sandbox",
     .type = CFG_BOOL,
     .def = "no",
     .offset = offsetof(struct push_apns_cfg, sandbox),
     .help = "Use api.sandbox.push.apple.com (development builds of the "
             "app) when base_url is empty."},
    {.key = "key_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct push_apns_cfg, key_file),
     .help = "Token auth: the .p8 signing key (EC P-256, PKCS#8 PEM) from "
             "the Apple developer account."},
    {.key = "key_id",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct push_apns_cfg, key_id),
     .help = "Token auth: the 10-character Key ID of key_file."},
    {.key = "team_id",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct push_apns_cfg, team_id),
     .help = "Token auth: the 10-character Team ID."},
    {.key = "topic",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct push_apns_cfg, topic),
     .help = "Bundle id used when a device gives no pn-param."},
    {.key = "cert_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct push_apns_cfg, cert_file),
     .help = "Certificate auth (instead of key_file): client certificate "
             "PEM."},
    {.key = "cert_key_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct push_apns_cfg, cert_key_file),
     .help = "Certificate auth: the certificate's private key PEM."},
    {.key = "ca_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct push_apns_cfg, ca_file),
     .help = "CA bundle to verify the server. Empty: system CAs."},
    {.key = "timeout_ms",
     .type = CFG_UINT,
     .min = 100,
     .max = 120000,
     .def = "10000",
     .offset = offsetof(struct push_apns_cfg, timeout_ms),
     .help = "Time limit of one HTTP/2 request (retries are separate)."},
};

static int
apns_finish(void *sec, char *err, size_t errlen)
{
    const struct push_apns_cfg *a = sec;

    if (!a->enabled)
        return 0;
    bool token = a->key_file[0] != '\0';
    if (token && (!a->key_id[0] || !a->team_id[0])) {
        snprintf(err, errlen, "key_file needs key_id and team_id");
        return -EINVAL;
    }
    if (!token && !a->cert_file[0]) {
        snprintf(err, errlen,
                 "enabled needs key_file (token auth) or cert_file");
        return -EINVAL;
    }
    return 0;
}

const struct cfg_section push_apns_cfg_section = {
    .name = "apns",
    .help = "Apple Push Notification service (iOS apps).",
    .options = apns_options,
    .option_count = sizeof(apns_options) / sizeof(apns_options[0]),
    .size = sizeof(struct push_apns_cfg),
    .finish = apns_finish,
};

static const struct cfg_option fcm_options[] = {
    {.key = "enabled",
     .type = CFG_BOOL,
     .def = "no",
     .offset = offsetof(struct push_fcm_cfg, enabled),
     .help = "Send pushes to Android devices (pn-provider=fcm). REGISTERs "
             "naming fcm get 555 while this is off."},
    {.key = "service_account_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct push_fcm_cfg, service_account_file),
     .help = "Google service-account JSON of the Firebase project "
             "(project_id, client_email, private_key, token_uri)."},
    {.key = "base_url",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct push_fcm_cfg, base_url),
     .help = "FCM server URL. Empty: https://fcm.googleapis.com."},
    {.key = "token_uri",
     .type = CFG_STRING,
     .def = "",
     .offset = offsetof(struct push_fcm_cfg, token_uri),
     .help = "OAuth token URL. Empty: the service account's token_uri."},
    {.key = "ca_file",
     .type = CFG_PATH,
     .def = "",
     .offset = offsetof(struct push_fcm_cfg, ca_file),
     .help = "CA bundle to verify the server. Empty: system CAs."},
    {.key = "timeout_ms",
     .type = CFG_UINT,
     .min = 100,
     .max = 120000,
     .def = "10000",
     .offset = offsetof(struct push_fcm_cfg, timeout_ms),
     .help = "Time limit of one HTTP/2 request (retries are separate)."},
};

static int
fcm_finish(void *sec, char *err, size_t errlen)
{
    const struct push_fcm_cfg *f = sec;

    if (f->enabled && !f->service_account_file[0]) {
        snprintf(err, errlen, "enabled needs service_account_file");
        return -EINVAL;
    }
    return 0;
}

const struct cfg_section push_fcm_cfg_section = {
    .name = "fcm",
    .help = "Firebase Cloud Messaging HTTP v1 (Android apps).",
    .options = fcm_options,
    .option_count = sizeof(fcm_options) / sizeof(fcm_options[0]),
    .size = sizeof(struct push_fcm_cfg),
    .finish = fcm_finish,
};

static const struct cfg_option wake_options[] = {
    {.key = "grace_ms",
     .type = CFG_UINT,
     .min = 0,
     .max = 30000,
     .def = "500",
     .offset = offsetof(struct push_wake_cfg, grace_ms),
     .help = "A push device that still has a UDP binding gets the INVITE "
             "directly and is pushed only if that branch sends no "
             "provisional response within this time."},
    {.key = "ringing",
     .type = CFG_BOOL,
     .def = "yes",
     .offset = offsetof(struct push_wake_cfg, ringing),
     .help = "Send 180 Ringing to the caller as soon as a push is sent, "
             "so the caller hears ringback while the phone wakes."},
    {.key = "recent",
     .type = CFG_UINT,
     .min = 1,
     .max = 100000,
     .def = "200",
     .offset = offsetof(struct push_wake_cfg, recent),
     .help = "Pushes kept in the recent-pushes list (admin API)."},
    {.key = "from_workers",
     .type = CFG_BOOL,
     .def = "yes",
     .offset = offsetof(struct push_wake_cfg, from_workers),
     .help = "Each SIP worker sends its calls' pushes itself, on its own "
             "HTTP/2 connection per provider, so the push is written "
             "before the worker moves on (lowest INVITE-to-push latency; "
             "default). no: one push thread sends every push (one "
             "connection per provider, the push work off the workers), "
             "which may suit a machine whose cores are busy with other "
             "work (BENCHMARKS.md \"Wake path\")."},
    {.key = "queue_max",
     .type = CFG_UINT,
     .min = 1,
     .max = 1000000,
     .def = "4096",
     .offset = offsetof(struct push_wake_cfg, queue_max),
     .help = "Pushes per provider waiting or in flight; more are refused "
             "and counted as failed."},
    {.key = "max_attempts",
     .type = CFG_UINT,
     .min = 1,
     .max = 50,
     .def = "6",
     .offset = offsetof(struct push_wake_cfg, max_attempts),
     .help = "HTTP attempts per push (429/5xx/timeouts are retried with "
             "backoff within the ring time)."},
    {.key = "backoff_initial_ms",
     .type = CFG_UINT,
     .min = 1,
     .max = 60000,
     .def = "250",
     .offset = offsetof(struct push_wake_cfg, backoff_initial_ms),
     .help = "First retry delay; doubles per attempt with jitter."},
    {.key = "backoff_max_ms",
     .type = CFG_UINT,
     .min = 1,
     .max = 600000,
     .def = "8000",
     .offset = offsetof(struct push_wake_cfg, backoff_max_ms),
     .help = "Largest retry delay."},
    {.key = "idle_expiry_days",
     .type = CFG_UINT,
     .min = 1,
     .max = 3650,
     .def = "30",
     .offset = offsetof(struct push_wake_cfg, idle_expiry_days),
     .help = "A push device that has not registered for this many days "
             "is deleted."},
    {.key = "disabled_extensions",
     .type = CFG_LIST,
     .def = "",
     .offset = offsetof(struct push_wake_cfg, disabled_extensions),
     .help = "Extensions that never get push: their REGISTERs with push "
             "parameters register a plain binding (no Feature-Caps)."},
    {.key = "message_preview",
     .type = CFG_BOOL,
     .def = "yes",
     .offset = offsetof(struct push_wake_cfg, message_preview),
     .help = "A push for a stored chat message carries its text as a "
             "preview (cut to fit 4 KiB at a character boundary). no: the "
             "notification says \"New message\" and no text of the "
             "message goes to Apple or Google (docs/messages.md)."},
};

const struct cfg_section push_wake_cfg_section = {
    .name = "push",
    .help = "Push wake-up behaviour shared by APNs and FCM.",
    .options = wake_options,
    .option_count = sizeof(wake_options) / sizeof(wake_options[0]),
    .size = sizeof(struct push_wake_cfg),
};

static const char *
opt(const char *s)
{
    return s && s[0] ? s : NULL;
}

void
push_cfg_conf(const struct push_apns_cfg *a, const struct push_fcm_cfg *f,
              const struct push_wake_cfg *w, struct push_conf *out)
{
    memset(out, 0, sizeof(*out));
    if (a) {
        out->apns = (struct push_apns_conf){
            .enabled = a->enabled,
            .base_url = opt(a->base_url),
            .sandbox = a->sandbox,
            .key_file = opt(a->key_file),
            .key_id = opt(a->key_id),
            .team_id = opt(a->team_id),
            .topic = opt(a->topic),
            .cert_file = opt(a->cert_file),
            .cert_key_file = opt(a->cert_key_file),
            .ca_file = opt(a->ca_file),
            .timeout_ms = a->timeout_ms,
        };
    }
    if (f) {
        out->fcm = (struct push_fcm_conf){
            .enabled = f->enabled,
            .service_account_file = opt(f->service_account_file),
            .base_url = opt(f->base_url),
            .token_uri = opt(f->token_uri),
            .ca_file = opt(f->ca_file),
            .timeout_ms = f->timeout_ms,
        };
    }
    if (w) {
        out->queue_max = w->queue_max;
        out->max_attempts = w->max_attempts;
        out->backoff_initial_ms = w->backoff_initial_ms;
        out->backoff_max_ms = w->backoff_max_ms;
    }
}

bool
push_cfg_ext_disabled(const struct push_wake_cfg *w, const char *ext)
{
    for (size_t i = 0; w && i < w->disabled_extensions.count; i++)
        if (strcmp(w->disabled_extensions.items[i], ext) == 0)
            return true;
    return false;
}
