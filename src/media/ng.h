/*
 * media/ng: rtpengine's ng control protocol without I/O: building requests,
 * framing datagrams ("COOKIE SP bencode-dict") and parsing answers,
 * including the per-leg media figures of a delete (or query) answer.
 *
 * A request is a bencode dict with "command" and the keys the command
 * needs. The flags a relay behind NAT needs (docs/media.md):
 *   replace: [origin, session-connection]  rtpengine's address in o=/c=
 *   ICE: remove (or force)                 no stale candidates of the phone
 *   flags: [SIP-source-address] and received-from: [IP4, <signalling src>]
 *                                          the SDP address is not trusted
 *   transport-protocol: RTP/AVP            SRTP (SDES) <-> RTP bridging
 * "asymmetric" is never sent: it turns off rtpengine's endpoint learning,
 * which is what makes media to a phone behind NAT work.
 *
 * Slices in answers point into the datagram and the node array given to
 * the parser; they live as long as both. Pure functions, any thread.
 */
#ifndef PUSHPBX_MEDIA_NG_H
#define PUSHPBX_MEDIA_NG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/buf.h"
#include "base/slice.h"
#include "media/bencode.h"

enum media_ng_cmd {
    MEDIA_NG_PING,
    MEDIA_NG_OFFER,
    MEDIA_NG_ANSWER,
    MEDIA_NG_DELETE,
    MEDIA_NG_QUERY,
    MEDIA_NG_LIST,
};

enum media_ng_ice {
    MEDIA_NG_ICE_UNSET,  /* no "ICE" key: rtpengine's default */
    MEDIA_NG_ICE_REMOVE, /* strip candidates (phones on both sides) */
    MEDIA_NG_ICE_FORCE,  /* rtpengine offers its own candidates */
};

/* Name of a command as sent ("offer", ...). */
const char *media_ng_cmd_name(enum media_ng_cmd cmd);

/* What one request carries. Every slice is borrowed; an empty slice means
 * "not sent". Which fields a command needs: offer: call_id, from_tag, sdp;
 * answer: call_id, from_tag, to_tag, sdp; delete: call_id (from_tag
 * recommended; to_tag/via_branch narrow it to a leg or branch); query:
 * call_id; ping, list: nothing. */
struct media_ng_req {
    enum media_ng_cmd cmd;
    struct slice call_id;
    struct slice from_tag;
    struct slice to_tag;
    struct slice via_branch;
    struct slice sdp;
    /* The signalling source address (IP literal, no port) the SDP came
     * from: sent as received-from [IP4|IP6, addr]. With sip_source, the
     * flag SIP-source-address tells rtpengine to use it instead of the
     * SDP's c= address (the phone is behind NAT). */
    struct slice received_from;
    bool sip_source;
    bool replace_origin;             /* replace: origin */
    bool replace_session_connection; /* replace: session-connection */
    enum media_ng_ice ice;
    /* "RTP/AVP", "RTP/SAVP", ...: the profile of the SDP rtpengine hands
     * to the other side (SRTP bridging); empty leaves it as offered. */
    struct slice transport_protocol;
    unsigned list_limit; /* list: "limit" (0: not sent) */
};

/* Append the request's bencode dict to out (not the cookie). Returns 0,
 * -EINVAL with *why set (static) when a field the command needs is missing
 * or received_from is not an IP literal, -EMSGSIZE when out's cap is hit
 * (out then holds a partial request). */
int media_ng_build(const struct media_ng_req *r, struct buf *out,
                   const char **why);

/* Split a datagram "COOKIE SP BODY". The cookie is 1..MEDIA_NG_COOKIE_MAX
 * printable non-space bytes. Returns 0, or -EINVAL with *why. */
#define MEDIA_NG_COOKIE_MAX 64
int media_ng_split(const char *p, size_t len, struct slice *cookie,
                   struct slice *body, const char **why);

/* Per-leg media figures of a delete or query answer. A leg is one tag
 * (one side of the call); its figures count what rtpengine received FROM
 * that side (RTP on the stream marked "RTP", RTCP on the "RTCP" one).
 * lost and jitter come from the RTCP the other side reported about this
 * side's SSRC ("cumulative loss", "average MOS" jitter as rtpengine prints
 * them); has_* is false when no RTCP report was seen. */
#define MEDIA_NG_MAX_LEGS 4
struct media_ng_leg {
    struct slice tag;
    uint64_t rtp_packets, rtp_bytes, rtp_errors;
    uint64_t rtcp_packets, rtcp_bytes;
    bool has_lost, has_jitter;
    uint64_t lost;
    uint64_t jitter;
};

struct media_ng_stats {
    size_t leg_count; /* at most MEDIA_NG_MAX_LEGS; more are not counted */
    struct media_ng_leg legs[MEDIA_NG_MAX_LEGS];
    /* Media flowed from at least one leg but never from another: the
     * classic "one-way audio" (a phone behind NAT whose RTP never got
     * through). no_media: nothing flowed at all. */
    bool one_way;
    bool no_media;
};

struct media_ng_answer {
    bool ok;                  /* result "ok" or "pong" */
    struct slice result;      /* "ok", "pong", "error", ... */
    struct slice error_reason; /* with result "error" */
    struct slice warning;     /* e.g. "Call-ID not found ..." */
    struct slice sdp;         /* offer/answer: the SDP for the other side */
    bool has_stats;           /* a "tags" dict was present */
    struct media_ng_stats stats;
    /* The whole decoded dict (root = nodes[0]) for anything else. */
    const struct media_benc *nodes;
    size_t node_count;
};

/* Parse an answer body (the part after the cookie) using nodes[0..cap) as
 * scratch. Returns 0, or -EINVAL/-E2BIG with *why when the body is not a
 * bencode dict with a string "result" (an answer that parses but says
 * "error" returns 0 with ok false). */
int media_ng_parse_answer(const char *p, size_t len, struct media_benc *nodes,
                          size_t cap, struct media_ng_answer *out,
                          const char **why);

/* Parse a relay address: "udp:HOST:PORT", "HOST:PORT", IPv6 as "[::1]:2223"
 * (with or without "udp:"). HOST must be an IP literal (no DNS lookups on
 * the workers). Returns 0, or -EINVAL with *why. */
int media_ng_addr_parse(const char *s, struct sockaddr_storage *out,
                        socklen_t *len, const char **why);

#endif
