/*
 * admin/admin_util: small pure helpers of the admin room: random tokens,
 * bearer check, extension number rule, redaction of device tokens in
 * contact URIs, and QR codes (libqrencode) drawn as SVG or PNG.
 *
 * The PNG writer is ours (stored deflate blocks, CRC-32, Adler-32): a QR
 * code is a few kilobytes even uncompressed, and this keeps zlib/libpng
 * out of the daemon.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <qrencode.h>

#include "admin/admin.h"
#include "base/buf.h"
#include "base/xmalloc.h"
#include "registrar/reg.h"

int
admin_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];

    if (nbytes > sizeof(raw) || RAND_bytes(raw, (int)nbytes) != 1)
        return -EIO;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

bool
admin_bearer_ok(const char *header, const char *token)
{
    static const char prefix[] = "Bearer ";
    size_t tlen = strlen(token);

    if (!header || tlen == 0)
        return false;
    if (strncasecmp(header, prefix, sizeof(prefix) - 1) != 0)
        return false;
    header += sizeof(prefix) - 1;
    while (*header == ' ')
        header++;
    if (strlen(header) != tlen)
        return false;
    return CRYPTO_memcmp(header, token, tlen) == 0;
}

bool
admin_number_ok(const char *n)
{
    return reg_ext_number_valid(n);
}

void
admin_redact_uri(const char *uri, char *out, size_t outlen)
{
    const char *p = uri;
    size_t o = 0;

    if (outlen == 0)
        return;
    while (*p && o + 1 < outlen) {
        if (strncasecmp(p, "pn-prid=", 8) == 0 && (p == uri || p[-1] == ';')) {
            size_t keep = 8 + 8;
            size_t i = 0;
            for (; i < keep && p[i] && p[i] != ';' && p[i] != '>' &&
                   o + 1 < outlen;
                 i++)
                out[o++] = p[i];
            p += i;
            if (*p && *p != ';' && *p != '>') {
                while (*p && *p != ';' && *p != '>')
                    p++;
                for (const char *d = "..."; *d && o + 1 < outlen; d++)
                    out[o++] = *d;
            }
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = '\0';
}

/* ---- QR ---------------------------------------------------------------- */

#define QUIET 4 /* modules of white border the spec asks for */

static QRcode *
encode(const char *text)
{
    if (!text || !text[0] || strlen(text) > 1024)
        return NULL;
    return QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
}

char *
admin_qr_svg(const char *text, size_t *len)
{
    QRcode *q = encode(text);
    struct buf b;

    if (!q)
        return NULL;
    int w = q->width, dim = w + 2 * QUIET;
    buf_init(&b, (size_t)1 << 22);
    buf_printf(&b,
               "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" "
               "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
               "shape-rendering=\"crispEdges\">\n"
               "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n"
               "<path fill=\"#000\" d=\"",
               dim, dim, dim * 8, dim * 8, dim, dim);
    for (int y = 0; y < w; y++) {
        for (int x = 0; x < w; x++) {
            if (!(q->data[y * w + x] & 1))
                continue;
            int run = 1;
            while (x + run < w && (q->data[y * w + x + run] & 1))
                run++;
            buf_printf(&b, "M%d %dh%dv1h-%dz", x + QUIET, y + QUIET, run, run);
            x += run - 1;
        }
    }
    buf_printf(&b, "\"/>\n</svg>\n");
    QRcode_free(q);
    *len = b.len;
    return b.data; /* owned by the caller now (free) */
}

static uint32_t
crc32_of(const unsigned char *p, size_t n, uint32_t crc)
{
    static uint32_t table[256];
    static bool ready;

    if (!ready) { /* benign race: every thread computes the same table */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Append one PNG chunk (length, type, data, CRC over type+data). */
static size_t
chunk(unsigned char *out, const char *type, const unsigned char *data, size_t n)
{
    put32(out, (uint32_t)n);
    memcpy(out + 4, type, 4);
    if (n)
        memcpy(out + 8, data, n);
    put32(out + 8 + n, crc32_of(out + 4, n + 4, 0));
    return n + 12;
}

unsigned char *
admin_qr_png(const char *text, unsigned scale, size_t *len)
{
    QRcode *q = encode(text);

    if (!q)
        return NULL;
    if (scale == 0 || scale > 16)
        scale = 8;
    int w = q->width;
    size_t px = (size_t)(w + 2 * QUIET) * scale;
    size_t row = px + 1; /* filter byte + gray pixels */
    size_t raw_len = row * px;
    unsigned char *raw = xmalloc(raw_len);

    for (size_t y = 0; y < px; y++) {
        unsigned char *r = raw + y * row;
        r[0] = 0; /* filter: none */
        for (size_t x = 0; x < px; x++) {
            long mx = (long)(x / scale) - QUIET, my = (long)(y / scale) - QUIET;
            bool dark = mx >= 0 && my >= 0 && mx < w && my < w &&
                        (q->data[my * w + mx] & 1);
            r[1 + x] = dark ? 0 : 255;
        }
    }
    QRcode_free(q);

    /* zlib stream: header, stored blocks of at most 65535, Adler-32. */
    size_t blocks = raw_len / 65535 + 1;
    size_t z_len = 2 + raw_len + blocks * 5 + 4;
    unsigned char *z = xmalloc(z_len);
    size_t zo = 0, off = 0;
    uint32_t a = 1, b = 0;
    z[zo++] = 0x78;
    z[zo++] = 0x01;
    do {
        size_t n = raw_len - off > 65535 ? 65535 : raw_len - off;
        z[zo++] = off + n == raw_len ? 1 : 0;
        z[zo++] = (unsigned char)(n & 0xff);
        z[zo++] = (unsigned char)(n >> 8);
        z[zo++] = (unsigned char)(~n & 0xff);
        z[zo++] = (unsigned char)((~n >> 8) & 0xff);
        memcpy(z + zo, raw + off, n);
        zo += n;
        off += n;
    } while (off < raw_len);
    for (size_t i = 0; i < raw_len; i++) {
        a = (a + raw[i]) % 65521;
        b = (b + a) % 65521;
    }
    put32(z + zo, (b << 16) | a);
    zo += 4;
    free(raw);

    unsigned char ihdr[13];
    put32(ihdr, (uint32_t)px);
    put32(ihdr + 4, (uint32_t)px);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 0;  /* grayscale */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* no interlace */
    unsigned char *png = xmalloc(8 + 25 + zo + 12 + 12);
    size_t o = 0;
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    o = 8;
    o += chunk(png + o, "IHDR", ihdr, sizeof(ihdr));
    o += chunk(png + o, "IDAT", z, zo);
    o += chunk(png + o, "IEND", NULL, 0);
    free(z);
    *len = o;
    return png;
}
