/*
 * fuzz_text.c - libFuzzer target for the text reader (src/text.c).
 *
 * Input layout: the first byte picks the mode, the rest is the data.
 *   bit 0: encoding (0 UTF-8, 1 bytes);
 *   bits 1-2: 0 build a vocabulary from the data and read it back;
 *             1 the next byte K splits the data: a vocabulary from the
 *               first K bytes, the rest read with it (unknown symbols);
 *             2 the data is a vocabulary string for bp_vocab_parse;
 *             3 the same as 0 through the model metadata (to/from_meta).
 * Properties checked beyond "no crash, no leak, no undefined behaviour":
 *   - a failure leaves the outputs zeroed with a message set;
 *   - a vocabulary is non-empty, strictly increasing, of valid symbols;
 *   - reading a text with its own vocabulary succeeds, gives at most one
 *     id per byte, every id in range, and the ids' bytes are the text
 *     again (less a leading UTF-8 byte order mark);
 *   - bp_vocab_format and bp_vocab_parse are inverses (a parsed string is
 *     formatted back to itself; a formatted vocabulary parses back equal).
 * Seed corpus: fuzz/corpus/text/ (replayed by ctest in every build).
 */
#include "backprop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_vocab(const bp_vocab *v)
{
    REQUIRE(v->size >= 1 && v->symbols != NULL);
    for (int i = 0; i < v->size; i++) {
        uint32_t s = v->symbols[i];
        if (v->encoding == BP_TEXT_BYTES) REQUIRE(s <= 0xFF);
        else REQUIRE(s <= 0x10FFFF && !(s >= 0xD800 && s <= 0xDFFF));
        if (i) REQUIRE(s > v->symbols[i - 1]);
        REQUIRE(bp_vocab_id(v, s) == i);
    }
}

static void check_failed(const bp_vocab *v, const bp_error *err, bp_status s)
{
    bp_vocab zero;
    memset(&zero, 0, sizeof zero);
    REQUIRE(memcmp(v, &zero, sizeof zero) == 0);
    REQUIRE(err->code == s && err->message[0] != '\0');
}

/* format -> parse gives the same vocabulary back. */
static void round_trip(const bp_vocab *v)
{
    size_t len = bp_vocab_format(v, NULL, 0);
    char *buf = malloc(len + 1);
    REQUIRE(buf != NULL);
    REQUIRE(bp_vocab_format(v, buf, len + 1) == len && strlen(buf) == len);
    bp_vocab w;
    bp_error err = {BP_OK, ""};
    REQUIRE(bp_vocab_parse(&w, buf, v->encoding, &err) == BP_OK);
    REQUIRE(w.size == v->size && w.encoding == v->encoding);
    REQUIRE(memcmp(w.symbols, v->symbols, (size_t)v->size * sizeof *v->symbols) == 0);
    bp_vocab_free(&w);
    /* A short buffer is cut but terminated. */
    char small[8];
    REQUIRE(bp_vocab_format(v, small, sizeof small) == len && strlen(small) < sizeof small);
    free(buf);
}

/* The text read with vocabulary v: ids in range, their bytes are the text. */
static bp_status read_back(const bp_vocab *v, const uint8_t *text, size_t size, int must_match)
{
    int32_t *ids = malloc((size ? size : 1) * sizeof *ids);
    REQUIRE(ids != NULL);
    size_t n = 12345;
    bp_error err = {BP_OK, ""};
    bp_status s = bp_text_ids(v, text, size, "t", ids, &n, &err);
    if (s != BP_OK) {
        REQUIRE(!must_match);
        REQUIRE(n == 0 && err.code == s && err.message[0] != '\0');
        REQUIRE(strncmp(err.message, "t:", 2) == 0);
        free(ids);
        return s;
    }
    REQUIRE(n <= size);
    size_t skip = v->encoding == BP_TEXT_UTF8 && size >= 3 && text[0] == 0xEF && text[1] == 0xBB &&
                  text[2] == 0xBF ? 3 : 0;
    size_t pos = skip;
    for (size_t k = 0; k < n; k++) {
        REQUIRE(ids[k] >= 0 && ids[k] < v->size);
        char b[4];
        int len = bp_vocab_token_bytes(v, ids[k], b);
        REQUIRE(len >= 1 && len <= 4 && pos + (size_t)len <= size);
        REQUIRE(memcmp(text + pos, b, (size_t)len) == 0);
        pos += (size_t)len;
    }
    REQUIRE(pos == size);
    free(ids);
    return BP_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    bp_text_encoding enc = data[0] & 1 ? BP_TEXT_BYTES : BP_TEXT_UTF8;
    int mode = data[0] >> 1 & 3;
    const uint8_t *text = data + 1;
    size_t n = size - 1;
    bp_vocab v;
    bp_error err = {BP_OK, ""};
    memset(&v, 0x5a, sizeof v);

    if (mode == 2) {
        char *s = malloc(n + 1);
        REQUIRE(s != NULL);
        memcpy(s, text, n);
        s[n] = '\0';
        bp_status st = bp_vocab_parse(&v, s, enc, &err);
        if (st != BP_OK) {
            check_failed(&v, &err, st);
        } else {
            check_vocab(&v);
            /* Canonical text only: formatting gives the same string. */
            size_t len = bp_vocab_format(&v, NULL, 0);
            char *f = malloc(len + 1);
            REQUIRE(f != NULL);
            bp_vocab_format(&v, f, len + 1);
            REQUIRE(strcmp(f, s) == 0);
            free(f);
            bp_vocab_free(&v);
        }
        free(s);
        return 0;
    }

    const uint8_t *vtext = text, *rest = text;
    size_t vn = n, rn = n;
    if (mode == 1 && n >= 1) {
        size_t k = text[0];
        vtext = text + 1;
        vn = k < n - 1 ? k : n - 1;
        rest = vtext + vn;
        rn = n - 1 - vn;
    }
    bp_status st = bp_vocab_build(&v, vtext, vn, enc, "t", &err);
    if (st != BP_OK) {
        check_failed(&v, &err, st);
        REQUIRE(st == BP_EFORMAT);
        REQUIRE(strncmp(err.message, "t:", 2) == 0);
        /* The same text read with any vocabulary fails too (invalid UTF-8
         * or nothing in it); an empty one reads as no ids. */
        return 0;
    }
    check_vocab(&v);
    REQUIRE(v.encoding == enc);
    round_trip(&v);
    if (mode == 1) {
        read_back(&v, rest, rn, 0);
    } else {
        read_back(&v, vtext, vn, 1);
    }
    if (mode == 3 && v.size <= 4096) {
        /* Through a network's metadata: an embedding of exactly v.size ids. */
        char spec[64];
        snprintf(spec, sizeof spec, "embedding(2,%d) dense(%d)", v.size, v.size);
        bp_net *net = NULL;
        if (bp_net_create_shaped(&net, bp_shape_flat(3), spec, 1, &err) == BP_OK) {
            REQUIRE(bp_vocab_to_meta(&v, net, &err) == BP_OK);
            bp_vocab w;
            REQUIRE(bp_vocab_from_meta(&w, net, &err) == BP_OK);
            REQUIRE(w.size == v.size && w.encoding == v.encoding &&
                    memcmp(w.symbols, v.symbols, (size_t)v.size * sizeof *v.symbols) == 0);
            bp_vocab_free(&w);
            /* A vocabulary of another size than the embedding's is refused. */
            if (v.size > 1) {
                bp_vocab shorter = v;
                shorter.size = v.size - 1;
                REQUIRE(bp_vocab_to_meta(&shorter, net, &err) == BP_ESHAPE);
            }
            bp_net_free(net);
        }
    }
    bp_vocab_free(&v);
    return 0;
}
