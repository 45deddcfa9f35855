/*
 * payload: every byte an app receives from us is built here, in one place,
 * so the documented format (docs/push-payload.md) has one implementation.
 *
 * The common object (product.md):
 *   {"v":1,"type":"call"|"missed"|"answered_elsewhere","call_id":..,
 *    "from":..,"from_name":..,"to":..,"sent_at":..,"expires_at":..}
 * APNs voip: that object at top level beside an empty "aps".
 * APNs alert: the object plus aps.alert {title, body, loc-key, loc-args}.
 * FCM: a data message (string values only; "from" is reserved by FCM, so
 * the caller travels as "caller") with android priority HIGH, ttl and
 * collapse_key.
 * Size limits are the providers' (4096 / 5120 voip / FCM data 4096): a
 * payload over the limit has its display name truncated (at a UTF-8
 * boundary); ids (call_id, from, to) are never cut: if they alone do not
 * fit the builder returns -EMSGSIZE.
 *
 * The message push (PUSH_MESSAGE, docs/messages.md) has its own object:
 *   {"v":1,"type":"message","message_id":..,"from":..,"from_name":..,
 *    "to":..,"content_type":..,"preview":..,"preview_truncated":bool,
 *    "sent_at":..,"expires_at":..}
 * APNs: always an alert, aps {alert {title: from_name or from, body:
 * preview or "New message"}, mutable-content 1, sound, thread-id}. FCM: a
 * data message (strings; "caller" for from) with collapse_key. The
 * preview is cleaned (invalid UTF-8 and NUL replaced by U+FFFD) and cut
 * first, at a character boundary, with "…" appended; then the name.
 */
#ifndef PUSHPBX_PUSH_PAYLOAD_H
#define PUSHPBX_PUSH_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "push/push.h"

#define PUSH_APNS_MAX_PAYLOAD 4096
#define PUSH_APNS_MAX_VOIP_PAYLOAD 5120
#define PUSH_FCM_MAX_DATA 4096
#define PUSH_PAYLOAD_VERSION 1
/* "c-" + 32 hex chars: fits APNs' 64-byte apns-collapse-id. */
#define PUSH_COLLAPSE_ID_LEN 34

/* Collapse id / collapse key for a call: "c-" + hex of the first 16 bytes
 * of SHA-256(call_id). Stable, so the missed-call push replaces the
 * incoming-call one, and bounded whatever the Call-ID length. */
void push_collapse_id(const char *call_id, char out[PUSH_COLLAPSE_ID_LEN + 1]);

/* "m-" + 32 hex chars: per conversation, fits apns-collapse-id. */
#define PUSH_MESSAGE_COLLAPSE_ID_LEN 34

/* Collapse id / collapse key / thread-id of a message push: "m-" + hex
 * of the first 16 bytes of SHA-256(from "\n" to). Every message from one
 * sender to one extension has the same, so the phone shows one
 * notification per conversation, updated by each new message. */
void push_message_collapse_id(const char *from, const char *to,
                              char out[PUSH_MESSAGE_COLLAPSE_ID_LEN + 1]);

/* Append to out the valid UTF-8 of in[0..len): each byte that does not
 * start a well-formed sequence (RFC 3629: no overlong forms, surrogates or
 * values above U+10FFFF; a sequence cut short counts as invalid) and
 * each NUL becomes U+FFFD, so the result is valid UTF-8 of at most 3 *
 * len bytes. Returns 0 or -EMSGSIZE (out's cap). */
int push_utf8_clean(const char *in, size_t len, struct buf *out);

/* APNs body for m (provider field ignored). voip selects the VoIP form and
 * the 5120-byte limit. sent_at_s is used when m->sent_at_s is 0. Appends to
 * out; returns 0, -EINVAL (missing field, invalid UTF-8) or -EMSGSIZE. */
int push_payload_apns(const struct push_msg *m, bool voip, int64_t sent_at_s,
                      struct buf *out);

/* FCM request body {"message":{"token":..,"data":{..},"android":{..}}}.
 * ttl_s < 0 omits android.ttl. Returns as push_payload_apns. */
int push_payload_fcm(const struct push_msg *m, int64_t sent_at_s,
                     long ttl_s, struct buf *out);

/* Bytes FCM counts against its 4096 limit: sum of data keys and values of
 * the body built by push_payload_fcm. -EINVAL if body is not such JSON. */
long push_payload_fcm_data_len(const char *body, size_t len);

#endif
