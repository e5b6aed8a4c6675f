/*
 * text.c - text as token ids for character-level language models.
 *
 * A text is read as UTF-8 characters (Unicode code points) or as raw bytes
 * (bp_text_encoding). Its vocabulary is the sorted list of the distinct
 * symbols it holds; token id i is the i-th symbol, so the ids of a text
 * depend only on the set of characters it uses, not on their order or
 * frequency. A vocabulary is stored in a model's metadata as "vocab", the
 * decimal symbols joined by commas ("10,32,33,..."), and "encoding"
 * ("utf8" or "bytes").
 *
 * UTF-8 is decoded strictly (RFC 3629): overlong forms, surrogates
 * (U+D800..U+DFFF), code points above U+10FFFF, stray continuation bytes
 * and truncated sequences are errors naming the line, the column (in
 * characters) and the offending byte. One byte order mark at the start of
 * a UTF-8 text is skipped. Lines end at LF ("\n"); a CR of CRLF is a
 * character like any other.
 */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CODE_POINT 0x10FFFFu

const char *bp_text_encoding_name(bp_text_encoding e)
{
    switch (e) {
    case BP_TEXT_UTF8: return "utf8";
    case BP_TEXT_BYTES: return "bytes";
    }
    return "?";
}

bp_status bp_text_encoding_parse(const char *name, bp_text_encoding *out, bp_error *err)
{
    if (!name || !out) return bp_fail(err, BP_EINVAL, "bp_text_encoding_parse: NULL argument");
    if (!strcmp(name, "utf8") || !strcmp(name, "utf-8") || !strcmp(name, "UTF-8")) *out = BP_TEXT_UTF8;
    else if (!strcmp(name, "bytes")) *out = BP_TEXT_BYTES;
    else return bp_fail(err, BP_EINVAL, "unknown text encoding '%.64s' (utf8 or bytes)", name);
    return BP_OK;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */
/* ------------------------------------------------------------------------ */

/* One UTF-8 character at p (p < end): its length 1..4 with *cp set, or 0
 * when the bytes at p do not start a valid character (RFC 3629 table). */
static int utf8_next(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
    unsigned c = p[0];
    size_t left = (size_t)(end - p);
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F;
    else if (c == 0xE0) len = 3, v = c & 0x0F, lo = 0xA0;
    else if (c == 0xED) len = 3, v = c & 0x0F, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) len = 3, v = c & 0x0F;
    else if (c == 0xF0) len = 4, v = c & 0x07, lo = 0x90;
    else if (c == 0xF4) len = 4, v = c & 0x07, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) len = 4, v = c & 0x07;
    else return 0; /* 80..C1 (continuation, overlong lead), F5..FF */
    if (left < (size_t)len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    v = v << 6 | (p[1] & 0x3F);
    for (int k = 2; k < len; k++) {
        if (p[k] < 0x80 || p[k] > 0xBF) return 0;
        v = v << 6 | (p[k] & 0x3F);
    }
    *cp = v;
    return len;
}

/* Position of the next symbol while walking a text. */
typedef struct text_pos {
    const unsigned char *p, *end, *start;
    long line, col; /* of the symbol at p, 1-based */
} text_pos;

static void pos_init(text_pos *t, const void *data, size_t size, bp_text_encoding enc)
{
    t->start = t->p = data;
    t->end = t->p + size;
    t->line = t->col = 1;
    /* A UTF-8 byte order mark is not part of the text. */
    if (enc == BP_TEXT_UTF8 && size >= 3 && t->p[0] == 0xEF && t->p[1] == 0xBB && t->p[2] == 0xBF)
        t->p += 3;
}

/* The next symbol: 1 with *sym set, 0 at the end, -1 on invalid UTF-8
 * (t->p then points at the offending byte, line/col at its character). */
static int pos_next(text_pos *t, bp_text_encoding enc, uint32_t *sym)
{
    if (t->p >= t->end) return 0;
    int len = 1;
    if (enc == BP_TEXT_BYTES) *sym = t->p[0];
    else if (!(len = utf8_next(t->p, t->end, sym))) return -1;
    t->p += len;
    return 1;
}

/* After a symbol was taken: advance the line and column. */
static void pos_advance(text_pos *t, uint32_t sym)
{
    if (sym == '\n') t->line++, t->col = 1;
    else t->col++;
}

static const char *name_or(const char *name)
{
    return name && *name ? name : "<text>";
}

static bp_status invalid_utf8(const text_pos *t, const char *name, bp_error *err)
{
    return bp_fail(err, BP_EFORMAT, "%.200s:%ld:%ld: invalid UTF-8 byte 0x%02X (byte offset %zu)",
                   name_or(name), t->line, t->col, (unsigned)t->p[0], (size_t)(t->p - t->start));
}

/* "character 'é' (U+00E9)", "character '\n' (U+000A)", "character U+0085",
 * "byte 0xE9", "byte 0x41 ('A')". */
static void describe(char *buf, size_t size, uint32_t sym, bp_text_encoding enc)
{
    if (enc == BP_TEXT_BYTES) {
        if (sym >= 0x20 && sym < 0x7F) snprintf(buf, size, "byte 0x%02X ('%c')", (unsigned)sym, (int)sym);
        else snprintf(buf, size, "byte 0x%02X", (unsigned)sym);
        return;
    }
    const char *esc = sym == '\n' ? "\\n" : sym == '\r' ? "\\r" : sym == '\t' ? "\\t" : NULL;
    if (esc) {
        snprintf(buf, size, "character '%s' (U+%04X)", esc, (unsigned)sym);
    } else if (sym < 0x20 || (sym >= 0x7F && sym <= 0x9F) || sym == 0x2028 || sym == 0x2029 ||
               sym == 0xFEFF) {
        snprintf(buf, size, "character U+%04X", (unsigned)sym);
    } else {
        char u[5];
        bp_vocab v = {BP_TEXT_UTF8, 1, &sym};
        int n = bp_vocab_token_bytes(&v, 0, u);
        u[n] = '\0';
        snprintf(buf, size, "character '%s' (U+%04X)", u, (unsigned)sym);
    }
}

/* ------------------------------------------------------------------------ */
/* Vocabularies                                                              */
/* ------------------------------------------------------------------------ */

void bp_vocab_free(bp_vocab *v)
{
    if (!v) return;
    free(v->symbols);
    memset(v, 0, sizeof *v);
}

static int valid_symbol(uint32_t s, bp_text_encoding enc)
{
    if (enc == BP_TEXT_BYTES) return s <= 0xFF;
    return s <= MAX_CODE_POINT && !(s >= 0xD800 && s <= 0xDFFF);
}

bp_status bp_vocab_build(bp_vocab *out, const void *text, size_t size, bp_text_encoding enc,
                         const char *name, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_vocab_build: NULL argument");
    memset(out, 0, sizeof *out);
    if (!text && size) return bp_fail(err, BP_EINVAL, "bp_vocab_build: NULL text");
    if (enc != BP_TEXT_UTF8 && enc != BP_TEXT_BYTES)
        return bp_fail(err, BP_EINVAL, "bp_vocab_build: unknown encoding %d", (int)enc);
    /* One bit per possible symbol: 136 KiB for every code point. */
    size_t n_sym = enc == BP_TEXT_BYTES ? 256 : (size_t)MAX_CODE_POINT + 1;
    uint8_t *seen = bp_alloc_array((n_sym + 7) / 8, 1);
    if (!seen) return bp_fail(err, BP_ENOMEM, "bp_vocab_build: out of memory");
    text_pos t;
    pos_init(&t, text ? text : "", size, enc);
    uint32_t sym;
    int r, count = 0;
    while ((r = pos_next(&t, enc, &sym)) > 0) {
        if (!(seen[sym >> 3] & (1u << (sym & 7)))) count++;
        seen[sym >> 3] |= (uint8_t)(1u << (sym & 7));
        pos_advance(&t, sym);
    }
    if (r < 0) {
        free(seen);
        return invalid_utf8(&t, name, err);
    }
    if (count == 0) {
        free(seen);
        return bp_fail(err, BP_EFORMAT, "%.200s: empty text (no characters)", name_or(name));
    }
    out->symbols = bp_alloc_array((size_t)count, sizeof *out->symbols);
    if (!out->symbols) {
        free(seen);
        return bp_fail(err, BP_ENOMEM, "bp_vocab_build: out of memory");
    }
    int k = 0;
    for (size_t s = 0; s < n_sym; s++)
        if (seen[s >> 3] & (1u << (s & 7))) out->symbols[k++] = (uint32_t)s;
    free(seen);
    out->size = count;
    out->encoding = enc;
    return BP_OK;
}

int bp_vocab_id(const bp_vocab *v, uint32_t symbol)
{
    if (!v || !v->symbols || v->size < 1) return -1;
    int lo = 0, hi = v->size - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (v->symbols[mid] == symbol) return mid;
        if (v->symbols[mid] < symbol) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int bp_vocab_token_bytes(const bp_vocab *v, int id, char out[4])
{
    if (!v || !v->symbols || id < 0 || id >= v->size || !out) return 0;
    uint32_t c = v->symbols[id];
    if (v->encoding == BP_TEXT_BYTES) {
        if (c > 0xFF) return 0;
        out[0] = (char)c;
        return 1;
    }
    if (!valid_symbol(c, BP_TEXT_UTF8)) return 0;
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* A vocabulary's own consistency: symbols strictly increasing and valid. */
static bp_status check_vocab(const bp_vocab *v, const char *fn, bp_error *err)
{
    if (!v || !v->symbols || v->size < 1)
        return bp_fail(err, BP_EINVAL, "%s: empty vocabulary", fn);
    if (v->encoding != BP_TEXT_UTF8 && v->encoding != BP_TEXT_BYTES)
        return bp_fail(err, BP_EINVAL, "%s: unknown encoding %d", fn, (int)v->encoding);
    for (int i = 0; i < v->size; i++) {
        if (!valid_symbol(v->symbols[i], v->encoding))
            return bp_fail(err, BP_EINVAL, "%s: symbol %d (%lu) is not a %s", fn, i,
                           (unsigned long)v->symbols[i],
                           v->encoding == BP_TEXT_BYTES ? "byte" : "Unicode character");
        if (i && v->symbols[i] <= v->symbols[i - 1])
            return bp_fail(err, BP_EINVAL, "%s: symbols are not strictly increasing at %d", fn, i);
    }
    return BP_OK;
}

bp_status bp_text_ids(const bp_vocab *v, const void *text, size_t size, const char *name,
                      int32_t *ids, size_t *n, bp_error *err)
{
    if (n) *n = 0;
    if (!n || (!ids && size) || (!text && size)) return bp_fail(err, BP_EINVAL, "bp_text_ids: NULL argument");
    bp_status s = check_vocab(v, "bp_text_ids", err);
    if (s) return s;
    /* Bytes map through a table; characters by binary search. */
    int table[256];
    if (v->encoding == BP_TEXT_BYTES) {
        for (int b = 0; b < 256; b++) table[b] = -1;
        for (int i = 0; i < v->size; i++) table[v->symbols[i]] = i;
    }
    text_pos t;
    pos_init(&t, text ? text : "", size, v->encoding);
    uint32_t sym;
    int r;
    size_t k = 0;
    while ((r = pos_next(&t, v->encoding, &sym)) > 0) {
        int id = v->encoding == BP_TEXT_BYTES ? table[sym] : bp_vocab_id(v, sym);
        if (id < 0) {
            char d[64];
            describe(d, sizeof d, sym, v->encoding);
            return bp_fail(err, BP_EFORMAT, "%.200s:%ld:%ld: %s is not in the model's vocabulary",
                           name_or(name), t.line, t.col, d);
        }
        ids[k++] = id;
        pos_advance(&t, sym);
    }
    if (r < 0) return invalid_utf8(&t, name, err);
    *n = k;
    return BP_OK;
}

/* ------------------------------------------------------------------------ */
/* Serialization                                                             */
/* ------------------------------------------------------------------------ */

size_t bp_vocab_format(const bp_vocab *v, char *buf, size_t size)
{
    size_t len = 0;
    if (buf && size) buf[0] = '\0';
    if (!v || !v->symbols) return 0;
    for (int i = 0; i < v->size; i++) {
        char num[16];
        int k = snprintf(num, sizeof num, "%s%lu", i ? "," : "", (unsigned long)v->symbols[i]);
        if (buf && len + (size_t)k < size) memcpy(buf + len, num, (size_t)k + 1);
        else if (buf && size) buf[len < size ? len : size - 1] = '\0';
        len += (size_t)k;
    }
    return len;
}

bp_status bp_vocab_parse(bp_vocab *out, const char *text, bp_text_encoding enc, bp_error *err)
{
    if (!out) return bp_fail(err, BP_EINVAL, "bp_vocab_parse: NULL argument");
    memset(out, 0, sizeof *out);
    if (enc != BP_TEXT_UTF8 && enc != BP_TEXT_BYTES)
        return bp_fail(err, BP_EINVAL, "bp_vocab_parse: unknown encoding %d", (int)enc);
    if (!text || !*text) return bp_fail(err, BP_EFORMAT, "vocabulary: empty (no symbols)");
    size_t commas = 0;
    for (const char *p = text; *p; p++) commas += *p == ',';
    uint32_t limit = enc == BP_TEXT_BYTES ? 0xFF : MAX_CODE_POINT;
    if (commas >= (size_t)limit + 1)
        return bp_fail(err, BP_EFORMAT, "vocabulary: %zu symbols, more than the %lu %s there are",
                       commas + 1, (unsigned long)limit + 1,
                       enc == BP_TEXT_BYTES ? "byte values" : "code points");
    uint32_t *sym = bp_alloc_array(commas + 1, sizeof *sym);
    if (!sym) return bp_fail(err, BP_ENOMEM, "bp_vocab_parse: out of memory");
    const char *p = text;
    size_t k = 0;
    bp_status s = BP_OK;
    char ex[64];
    for (;;) {
        const char *q = p;
        uint64_t v = 0;
        while (*q >= '0' && *q <= '9' && q - p <= 8) v = v * 10 + (uint64_t)(*q++ - '0');
        size_t len = strcspn(p, ",");
        /* Canonical decimals only: digits, no sign, no spaces, no leading zero. */
        if (q == p || (size_t)(q - p) != len || (len > 1 && p[0] == '0') || v > limit) {
            int digits = len > 0 && strspn(p, "0123456789") == len && !(len > 1 && p[0] == '0');
            if (digits)
                s = bp_fail(err, BP_EFORMAT, "vocabulary: symbol %zu, %s, is out of range (0..%lu)",
                            k + 1, bp_quote_excerpt(ex, sizeof ex, p, len), (unsigned long)limit);
            else
                s = bp_fail(err, BP_EFORMAT, "vocabulary: symbol %zu, %s, is not a decimal %s",
                            k + 1, bp_quote_excerpt(ex, sizeof ex, p, len),
                            enc == BP_TEXT_BYTES ? "byte value" : "code point");
            break;
        }
        if (!valid_symbol((uint32_t)v, enc)) {
            s = bp_fail(err, BP_EFORMAT, "vocabulary: symbol %zu, %lu (U+%04lX), is a surrogate, "
                        "not a character", k + 1, (unsigned long)v, (unsigned long)v);
            break;
        }
        if (k && (uint32_t)v == sym[k - 1]) {
            s = bp_fail(err, BP_EFORMAT, "vocabulary: symbol %lu appears twice (at %zu and %zu)",
                        (unsigned long)v, k, k + 1);
            break;
        }
        if (k && (uint32_t)v < sym[k - 1]) {
            s = bp_fail(err, BP_EFORMAT, "vocabulary: symbol %zu (%lu) is below the one before it "
                        "(%lu); the symbols must be in increasing order", k + 1, (unsigned long)v,
                        (unsigned long)sym[k - 1]);
            break;
        }
        sym[k++] = (uint32_t)v;
        if (!p[len]) break;
        p += len + 1;
    }
    if (s) {
        free(sym);
        return s;
    }
    out->encoding = enc;
    out->size = (int)k;
    out->symbols = sym;
    return BP_OK;
}

/* The embedding of a network must take exactly the vocabulary's ids. */
static bp_status check_net(const bp_vocab *v, const bp_net *net, const char *fn, bp_status code,
                           bp_error *err)
{
    if (bp_net_layers(net) < 1) return BP_OK;
    bp_layer_desc d = bp_net_layer(net, 0);
    if (d.kind == BP_EMBEDDING && d.vocab != v->size)
        return bp_fail(err, code, "%s: the vocabulary has %d symbols, the network's "
                       "embedding takes %d", fn, v->size, d.vocab);
    return BP_OK;
}

bp_status bp_vocab_to_meta(const bp_vocab *v, bp_net *net, bp_error *err)
{
    if (!v || !net) return bp_fail(err, BP_EINVAL, "bp_vocab_to_meta: NULL argument");
    bp_status s = check_vocab(v, "bp_vocab_to_meta", err);
    if (!s) s = check_net(v, net, "bp_vocab_to_meta", BP_ESHAPE, err);
    if (s) return s;
    size_t len = bp_vocab_format(v, NULL, 0);
    char *buf = malloc(len + 1);
    if (!buf) return bp_fail(err, BP_ENOMEM, "bp_vocab_to_meta: out of memory");
    bp_vocab_format(v, buf, len + 1);
    s = bp_net_set_meta(net, "vocab", buf, err);
    free(buf);
    if (!s) s = bp_net_set_meta(net, "encoding", bp_text_encoding_name(v->encoding), err);
    return s;
}

bp_status bp_vocab_from_meta(bp_vocab *out, const bp_net *net, bp_error *err)
{
    if (!out || !net) return bp_fail(err, BP_EINVAL, "bp_vocab_from_meta: NULL argument");
    memset(out, 0, sizeof *out);
    const char *text = bp_net_get_meta(net, "vocab"), *enc_s = bp_net_get_meta(net, "encoding");
    if (!text) return bp_fail(err, BP_EFORMAT, "model metadata: \"vocab\" is missing");
    if (!enc_s) return bp_fail(err, BP_EFORMAT, "model metadata: \"encoding\" is missing");
    bp_text_encoding enc;
    if (bp_text_encoding_parse(enc_s, &enc, NULL) != BP_OK) {
        char ex[64];
        return bp_fail(err, BP_EFORMAT, "model metadata: \"encoding\" is %s, expected utf8 or bytes",
                       bp_quote_excerpt(ex, sizeof ex, enc_s, strlen(enc_s)));
    }
    bp_error e = {BP_OK, ""};
    bp_status s = bp_vocab_parse(out, text, enc, &e);
    if (s) return bp_fail(err, s, "model metadata: \"vocab\": %s", e.message);
    s = check_net(out, net, "model metadata: \"vocab\"", BP_EFORMAT, err);
    if (s) bp_vocab_free(out);
    return s;
}
