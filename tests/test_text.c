/* test_text.c - the text reader (src/text.c): vocabularies of UTF-8 and
 * byte texts, token ids, the line:column messages of unknown characters and
 * invalid UTF-8, the byte order mark and CRLF, and the vocabulary's
 * serialization (format, parse and its errors, model metadata). */
#include "backprop.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static bp_error err;

static int has(const char *msg, const char *part)
{
    return strstr(msg, part) != NULL;
}

static void test_build_utf8(void)
{
    const char *t = "b\xc3\xa9" "a\nb\xe2\x82\xac"; /* b é a \n b € */
    bp_vocab v;
    CHECK(bp_vocab_build(&v, t, strlen(t), BP_TEXT_UTF8, "t.txt", &err) == BP_OK, "build: %s",
          err.message);
    CHECK(v.size == 5 && v.encoding == BP_TEXT_UTF8, "5 distinct characters, got %d", v.size);
    uint32_t want[5] = {'\n', 'a', 'b', 0xE9, 0x20AC};
    CHECK(v.size == 5 && memcmp(v.symbols, want, sizeof want) == 0, "sorted code points");
    CHECK(bp_vocab_id(&v, 0xE9) == 3 && bp_vocab_id(&v, 'z') == -1, "ids by symbol");
    char b[4];
    CHECK(bp_vocab_token_bytes(&v, 4, b) == 3 && memcmp(b, "\xe2\x82\xac", 3) == 0, "euro bytes");
    CHECK(bp_vocab_token_bytes(&v, 5, b) == 0 && bp_vocab_token_bytes(&v, -1, b) == 0, "bad ids");
    int32_t ids[16];
    size_t n = 0;
    CHECK(bp_text_ids(&v, t, strlen(t), "t.txt", ids, &n, &err) == BP_OK, "ids: %s", err.message);
    int32_t want_ids[6] = {2, 3, 1, 0, 2, 4};
    CHECK(n == 6 && memcmp(ids, want_ids, sizeof want_ids) == 0, "6 ids in order, got %zu", n);
    char f[64];
    size_t len = bp_vocab_format(&v, f, sizeof f);
    CHECK(len == strlen("10,97,98,233,8364") && strcmp(f, "10,97,98,233,8364") == 0, "format '%s'", f);
    /* A short buffer: cut, terminated, the full length returned. */
    char s[6];
    CHECK(bp_vocab_format(&v, s, sizeof s) == len && strlen(s) < sizeof s, "short buffer '%s'", s);
    bp_vocab_free(&v);
    bp_vocab_free(&v); /* twice is fine: zeroed */
    bp_vocab_free(NULL);
}

static void test_unknown_and_positions(void)
{
    bp_vocab v;
    const char *train = "abc\n";
    CHECK(bp_vocab_build(&v, train, strlen(train), BP_TEXT_UTF8, NULL, &err) == BP_OK, "build");
    int32_t ids[64];
    size_t n = 99;
    const char *t = "ab\r\nca\xc3\xa9";
    /* line 2: "ca" then é at column 3 (characters, not bytes). The CR of
     * CRLF is a character, so the first unknown is '\r' at 1:3. */
    CHECK(bp_text_ids(&v, t, strlen(t), "x.txt", ids, &n, &err) == BP_EFORMAT && n == 0, "CR unknown");
    CHECK(has(err.message, "x.txt:1:3: character '\\r' (U+000D) is not in the model's vocabulary"),
          "CR message: %s", err.message);
    const char *t2 = "ab\ncaa\xc3\xa9";
    CHECK(bp_text_ids(&v, t2, strlen(t2), "x.txt", ids, &n, &err) == BP_EFORMAT, "é unknown");
    CHECK(has(err.message, "x.txt:2:4: character '\xc3\xa9' (U+00E9) is not in the model's vocabulary"),
          "é message: %s", err.message);
    const char *t3 = "\xc3\xa9\xc3\xa9" "a\x01";
    bp_vocab_free(&v);
    const char *train3 = "\xc3\xa9" "a";
    CHECK(bp_vocab_build(&v, train3, strlen(train3), BP_TEXT_UTF8, NULL, &err) == BP_OK, "build 3");
    CHECK(bp_text_ids(&v, t3, strlen(t3), NULL, ids, &n, &err) == BP_EFORMAT, "control unknown");
    CHECK(has(err.message, "<text>:1:4: character U+0001 is not"), "control message: %s", err.message);
    bp_vocab_free(&v);
    /* bytes */
    CHECK(bp_vocab_build(&v, "xy", 2, BP_TEXT_BYTES, "b", &err) == BP_OK, "bytes build");
    CHECK(bp_text_ids(&v, "xy\xc3", 3, "b", ids, &n, &err) == BP_EFORMAT &&
          has(err.message, "b:1:3: byte 0xC3 is not in the model's vocabulary"), "byte message: %s",
          err.message);
    CHECK(bp_text_ids(&v, "xyz", 3, "b", ids, &n, &err) == BP_EFORMAT &&
          has(err.message, "b:1:3: byte 0x7A ('z') is not"), "printable byte message: %s", err.message);
    CHECK(bp_text_ids(&v, "", 0, "b", ids, &n, &err) == BP_OK && n == 0, "empty text: no ids");
    bp_vocab_free(&v);
}

static void test_invalid_utf8(void)
{
    static const struct {
        const char *text;
        size_t len;
        const char *msg;
    } cases[] = {
        {"ab\ncd\xc3(", 7, "f:2:3: invalid UTF-8 byte 0xC3 (byte offset 5)"},   /* truncated */
        {"\x80", 1, "f:1:1: invalid UTF-8 byte 0x80"},                          /* stray */
        {"a\xc0\xaf", 3, "f:1:2: invalid UTF-8 byte 0xC0"},                     /* overlong */
        {"\xe0\x80\xaf", 3, "f:1:1: invalid UTF-8 byte 0xE0"},                  /* overlong 3 */
        {"\xed\xa0\x80", 3, "f:1:1: invalid UTF-8 byte 0xED"},                  /* surrogate */
        {"\xf4\x90\x80\x80", 4, "f:1:1: invalid UTF-8 byte 0xF4"},              /* > U+10FFFF */
        {"\xf5\x80\x80\x80", 4, "f:1:1: invalid UTF-8 byte 0xF5"},
        {"ok\xe2\x82", 4, "f:1:3: invalid UTF-8 byte 0xE2"},                    /* cut at the end */
        {"\xc3\xa9\xc3\xa9\xff", 5, "f:1:3: invalid UTF-8 byte 0xFF (byte offset 4)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bp_vocab v;
        memset(&v, 1, sizeof v);
        bp_status s = bp_vocab_build(&v, cases[i].text, cases[i].len, BP_TEXT_UTF8, "f", &err);
        CHECK(s == BP_EFORMAT && has(err.message, cases[i].msg) && v.size == 0 && !v.symbols,
              "case %zu: '%s' (want '%s')", i, err.message, cases[i].msg);
        /* The same bytes are fine as bytes. */
        CHECK(bp_vocab_build(&v, cases[i].text, cases[i].len, BP_TEXT_BYTES, "f", &err) == BP_OK,
              "case %zu as bytes", i);
        bp_vocab_free(&v);
    }
    /* The largest valid code point, and every encoding length. */
    const char *ok = "\x7f\xdf\xbf\xef\xbf\xbd\xf4\x8f\xbf\xbf";
    bp_vocab v;
    CHECK(bp_vocab_build(&v, ok, strlen(ok), BP_TEXT_UTF8, "f", &err) == BP_OK && v.size == 4 &&
          v.symbols[3] == 0x10FFFF, "valid edges: %s", err.message);
    bp_vocab_free(&v);
}

static void test_bom_and_empty(void)
{
    bp_vocab v;
    CHECK(bp_vocab_build(&v, "", 0, BP_TEXT_UTF8, "e.txt", &err) == BP_EFORMAT &&
          has(err.message, "e.txt: empty text"), "empty: %s", err.message);
    CHECK(bp_vocab_build(&v, "\xef\xbb\xbf", 3, BP_TEXT_UTF8, "e.txt", &err) == BP_EFORMAT,
          "a byte order mark alone is empty");
    const char *t = "\xef\xbb\xbfhi";
    CHECK(bp_vocab_build(&v, t, strlen(t), BP_TEXT_UTF8, "b", &err) == BP_OK && v.size == 2,
          "the BOM is skipped in UTF-8");
    int32_t ids[8];
    size_t n = 0;
    CHECK(bp_text_ids(&v, t, strlen(t), "b", ids, &n, &err) == BP_OK && n == 2, "2 ids after a BOM");
    bp_vocab_free(&v);
    CHECK(bp_vocab_build(&v, t, strlen(t), BP_TEXT_BYTES, "b", &err) == BP_OK && v.size == 5,
          "bytes keep the BOM's 3 bytes");
    bp_vocab_free(&v);
}

static void test_parse(void)
{
    bp_vocab v;
    CHECK(bp_vocab_parse(&v, "10,32,233,1114111", BP_TEXT_UTF8, &err) == BP_OK && v.size == 4 &&
          v.symbols[3] == 0x10FFFF, "parse: %s", err.message);
    bp_vocab_free(&v);
    static const struct {
        const char *text;
        bp_text_encoding enc;
        const char *msg;
    } bad[] = {
        {"", BP_TEXT_UTF8, "empty"},
        {"10,10", BP_TEXT_UTF8, "symbol 10 appears twice"},
        {"32,10", BP_TEXT_UTF8, "below the one before it"},
        {"1114112", BP_TEXT_UTF8, "out of range (0..1114111)"},
        {"256", BP_TEXT_BYTES, "out of range (0..255)"},
        {"55296", BP_TEXT_UTF8, "surrogate"},
        {"10,", BP_TEXT_UTF8, "symbol 2, \"\", is not a decimal code point"},
        {"10, 32", BP_TEXT_UTF8, "is not a decimal"},
        {"010", BP_TEXT_UTF8, "is not a decimal"},
        {"-1", BP_TEXT_BYTES, "is not a decimal byte value"},
        {"1e3", BP_TEXT_UTF8, "is not a decimal"},
        {"99999999999999999999", BP_TEXT_UTF8, "out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&v, 1, sizeof v);
        bp_status s = bp_vocab_parse(&v, bad[i].text, bad[i].enc, &err);
        CHECK(s == BP_EFORMAT && has(err.message, bad[i].msg) && !v.symbols && v.size == 0,
              "parse '%s': %s (want '%s')", bad[i].text, err.message, bad[i].msg);
    }
    bp_text_encoding e;
    CHECK(bp_text_encoding_parse("bytes", &e, &err) == BP_OK && e == BP_TEXT_BYTES, "bytes");
    CHECK(bp_text_encoding_parse("utf8", &e, &err) == BP_OK && e == BP_TEXT_UTF8, "utf8");
    CHECK(bp_text_encoding_parse("latin1", &e, &err) == BP_EINVAL && has(err.message, "latin1"),
          "unknown encoding: %s", err.message);
    CHECK(!strcmp(bp_text_encoding_name(BP_TEXT_BYTES), "bytes"), "name bytes");
}

static void test_meta(void)
{
    bp_net *net = NULL;
    CHECK(bp_net_create_shaped(&net, bp_shape_flat(4), "embedding(3,4) gru(5) dense(4)", 1, &err) ==
          BP_OK, "net: %s", err.message);
    if (!net) return;
    bp_vocab v, w;
    CHECK(bp_vocab_build(&v, "abcd", 4, BP_TEXT_BYTES, NULL, &err) == BP_OK, "build");
    CHECK(bp_vocab_to_meta(&v, net, &err) == BP_OK, "to_meta: %s", err.message);
    CHECK(!strcmp(bp_net_get_meta(net, "vocab"), "97,98,99,100") &&
          !strcmp(bp_net_get_meta(net, "encoding"), "bytes"), "stored keys");
    CHECK(bp_vocab_from_meta(&w, net, &err) == BP_OK && w.size == 4 && w.encoding == BP_TEXT_BYTES &&
          memcmp(w.symbols, v.symbols, 4 * sizeof *v.symbols) == 0, "from_meta: %s", err.message);
    bp_vocab_free(&w);
    v.size = 3;
    CHECK(bp_vocab_to_meta(&v, net, &err) == BP_ESHAPE && has(err.message, "embedding takes 4"),
          "another size than the embedding: %s", err.message);
    v.size = 4;
    bp_net_set_meta(net, "vocab", "97,98,99", &err);
    CHECK(bp_vocab_from_meta(&w, net, &err) == BP_EFORMAT && has(err.message, "embedding takes 4") &&
          !w.symbols, "stored size disagrees: %s", err.message);
    bp_net_set_meta(net, "vocab", "97,98,98,99", &err);
    CHECK(bp_vocab_from_meta(&w, net, &err) == BP_EFORMAT && has(err.message, "\"vocab\": vocabulary: "
          "symbol 98 appears twice"), "duplicate stored: %s", err.message);
    bp_net_set_meta(net, "vocab", "97,98,99,100", &err);
    bp_net_set_meta(net, "encoding", "ebcdic", &err);
    CHECK(bp_vocab_from_meta(&w, net, &err) == BP_EFORMAT && has(err.message, "\"encoding\" is"),
          "bad encoding stored: %s", err.message);
    bp_vocab_free(&v);
    bp_net_free(net);
    bp_net *plain = NULL;
    bp_net_create(&plain, 3, "dense(2)", 1, &err);
    CHECK(plain && bp_vocab_from_meta(&w, plain, &err) == BP_EFORMAT && has(err.message, "\"vocab\" is missing"),
          "no vocabulary stored: %s", err.message);
    bp_net_free(plain);
}

int main(void)
{
    test_build_utf8();
    test_unknown_and_positions();
    test_invalid_utf8();
    test_bom_and_empty();
    test_parse();
    test_meta();
    return check_done("test_text");
}
