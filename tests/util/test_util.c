#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

TEST(sha256_known_vectors) {
    char hex[65];
    sha256_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* Two blocks: exercises the padding across a block boundary. */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m, strlen(m), hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(base64_known_answers_and_rejections) {
    /* RFC 4648, section 10 */
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < ARRAY_LEN(plain); i++) {
        char *e = base64_encode(plain[i], strlen(plain[i]));
        CHECK_STR(e, coded[i]);
        free(e);
        size_t n = 99;
        unsigned char *d = base64_decode(coded[i], strlen(coded[i]), &n);
        REQUIRE(d != NULL);
        CHECK_INT((long long)n, (long long)strlen(plain[i]));
        CHECK_STR((char *)d, plain[i]);
        free(d);
    }
    static const char *bad[] = {"Zg=", "Z===", "====", "Zm9v!A==", "Zg==Zg==", "=Zg=", "Zm 9"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        size_t n;
        unsigned char *d = base64_decode(bad[i], strlen(bad[i]), &n);
        CHECK(d == NULL);
        free(d);
    }
    /* Floats as little-endian IEEE-754 bytes (OpenAI's encoding_format=base64):
     * 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0. */
    const float v[] = {1.0f, -2.0f};
    char *e = base64_from_floats(v, 2);
    CHECK_STR(e, "AACAPwAAAMA=");
    int dim = 0;
    float *back = base64_to_floats(e, strlen(e), &dim);
    REQUIRE(back != NULL);
    CHECK_INT(dim, 2);
    CHECK(back[0] == 1.0f && back[1] == -2.0f);
    free(back);
    free(e);
    CHECK(base64_to_floats("Zm8=", 4, &dim) == NULL); /* 2 bytes: not a whole float */
    CHECK(base64_to_floats("", 0, &dim) == NULL);
}

TEST(iso8601_parses_and_formats_utc) {
    int64_t t;
    CHECK_INT(iso8601_parse("2026-01-20T10:00:00Z", &t), 0);
    CHECK_INT(t, 1768903200);
    CHECK_INT(iso8601_parse("2026-01-20T12:00:00+02:00", &t), 0);
    CHECK_INT(t, 1768903200);
    CHECK_INT(iso8601_parse("2026-01-20T10:00:00.123456Z", &t), 0);
    CHECK_INT(t, 1768903200);
    CHECK_INT(iso8601_parse("2026-01-20", &t), 0);
    CHECK_INT(t, 1768867200);
    CHECK_INT(iso8601_parse("1969-12-31T23:59:59Z", &t), 0);
    CHECK_INT(t, -1);
    char out[32];
    CHECK_STR(iso8601_format(1768903200, out, sizeof out), "2026-01-20T10:00:00Z");
    CHECK_INT(iso8601_parse("2026-13-01T00:00:00Z", &t), -1);
    CHECK_INT(iso8601_parse("2026-01-20T10:00:00Zjunk", &t), -1);
    CHECK_INT(iso8601_parse("yesterday", &t), -1);
    CHECK_INT(iso8601_parse(NULL, &t), -1);
}

TEST(buf_grows_and_formats) {
    buf_t b = BUF_INIT;
    CHECK_STR(buf_cstr(&b), "");
    for (int i = 0; i < 1000; i++) buf_printf(&b, "%d,", i);
    CHECK(b.len > 3000);
    CHECK(strncmp(b.data, "0,1,2,", 6) == 0);
    buf_truncate(&b, 2);
    CHECK_STR(buf_cstr(&b), "0,");
    char *s = buf_detach(&b);
    CHECK_STR(s, "0,");
    CHECK(b.data == NULL);
    free(s);
}

TEST(strmap_put_get_replace_many) {
    strmap_t m = STRMAP_INIT;
    char key[32];
    for (long i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%ld", i);
        CHECK(strmap_put(&m, key, (void *)(i + 1)) == NULL);
    }
    CHECK_INT(m.count, 5000);
    CHECK((long)strmap_get(&m, "k4321") == 4322);
    CHECK(strmap_get(&m, "nope") == NULL);
    CHECK((long)strmap_put(&m, "k7", (void *)99) == 8);
    CHECK((long)strmap_get(&m, "k7") == 99);
    CHECK_INT(m.count, 5000);
    strmap_free(&m, NULL);
}

TEST(utf8_repair_and_cut) {
    size_t bad = 0;
    char *r = utf8_repair("ok\xff\xfe" "caf\xc3\xa9", 9, &bad);
    CHECK_INT(bad, 2);
    CHECK_STR(r, "ok\xEF\xBF\xBD\xEF\xBF\xBD" "caf\xc3\xa9");
    free(r);
    CHECK(!utf8_valid("\xc0\xaf", 2)); /* overlong '/' */
    CHECK(!utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    CHECK(utf8_valid("\xf0\x9f\x98\x80", 4));
    /* Cutting "café" at 4 bytes must not split the é. */
    CHECK_INT(utf8_cut("caf\xc3\xa9", 5, 4), 3);
    CHECK_INT(utf8_count("caf\xc3\xa9", 5), 4);
    CHECK_INT(utf8_offset_of("caf\xc3\xa9!", 6, 4), 5);
}

TEST(rng_is_seeded_and_bounded) {
    rng_t a, b;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(rng_next(&a) == rng_next(&b));
    rng_seed(&b, 43);
    CHECK(rng_next(&a) != rng_next(&b));
    int hist[7] = {0};
    for (int i = 0; i < 7000; i++) hist[rng_below(&a, 7)]++;
    for (int i = 0; i < 7; i++) CHECK(hist[i] > 800 && hist[i] < 1200);
}

TEST(jsonx_typed_access) {
    json_t *o = json_loads("{\"s\":\"x\",\"i\":5,\"r\":2.0,\"f\":2.5,\"b\":true,\"a\":[1]}", 0, NULL);
    REQUIRE(o != NULL);
    CHECK_STR(jx_str(o, "s"), "x");
    CHECK(jx_str(o, "i") == NULL);
    CHECK_INT(jx_int(o, "i", -1), 5);
    CHECK_INT(jx_int(o, "r", -1), 2);
    CHECK_INT(jx_int(o, "f", -1), -1);
    CHECK_INT(jx_bool(o, "b", 0), 1);
    CHECK(jx_arr(o, "a") != NULL);
    CHECK(jx_obj(o, "a") == NULL);
    json_t *s = jx_string("bad\xff");
    CHECK_STR(json_string_value(s), "bad\xEF\xBF\xBD");
    json_decref(s);
    json_decref(o);
}

TEST(utf8_repair_of_empty_input_is_a_string) {
    char *r = utf8_repair("", 0, NULL);
    CHECK_STR(r, "");
    free(r);
    buf_t b = BUF_INIT;
    buf_reserve(&b, 10);
    CHECK_STR(b.data, "");
    buf_free(&b);
}
