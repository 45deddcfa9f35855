/*
 * sip/peek: look at one header of a datagram without parsing the message.
 *
 * The UDP receive path uses it to decide which worker owns a request
 * before paying for the full parse (transport/tp.h, "UDP spreading"): the
 * owner is the Call-ID's hash modulo the number of workers, so every
 * message of a call (INVITE, its retransmissions, CANCEL, ACK, BYE) and
 * every retransmission of a REGISTER reaches the same worker whatever
 * port it came from. The only promise is determinism: the same bytes
 * give the same hash. A message the peek cannot read is handled where it
 * arrived; the full parser then answers it.
 *
 * Thread: any, no shared state.
 */
#ifndef PUSHPBX_SIP_PEEK_H
#define PUSHPBX_SIP_PEEK_H

#include <stddef.h>
#include <stdint.h>

/* Hash the Call-ID of the message in buf[0..len) (leading CRLFs already
 * skipped): the first header named "Call-ID" or "i" (any case, optional
 * whitespace before the colon) among the header lines, that is after the
 * start line and before the first empty line; CRLF or bare LF line ends.
 * The value's bytes without spaces, tabs and CR are hashed (FNV-1a and
 * MurmurHash3's fmix32, 32 bits), including continuation lines (folding), so
 * "i: a" and "Call-ID:a" hash alike. Returns 0 and *hash, or -ENOENT when there
 * is no such header or its value is empty. Reads at most len bytes, never
 * writes. */
int sip_peek_call_id(const char *buf, size_t len, uint32_t *hash);

#endif
