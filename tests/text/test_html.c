/* html_to_text(): tags, comments, script/style, entities (decoded once), whitespace,
 * UTF-8 repair, and linear time on large or adversarial input. */
#include "test.h"

#include <stdlib.h>

#include "text/text.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/rng.h"
#include "util/timeutil.h"
#include "util/utf8.h"

/* html_to_text(in) == want, freeing the result. */
#define CHECK_HTML(in, want)                \
    do {                                    \
        char *got_ = html_to_text(in);      \
        CHECK_STR(got_, want);              \
        free(got_);                         \
    } while (0)

TEST(tags_become_spaces) {
    CHECK_HTML("<p>Hello <b>world</b></p>", "Hello world");
    CHECK_HTML("line<br>break<br/>again", "line break again");
    CHECK_HTML("<div>one</div><div>two</div>", "one two");
    CHECK_HTML("in<i>line</i>tag", "in line tag");
    CHECK_HTML("<a href=\"https://x.com/?a=1&amp;b=2\">link</a>", "link");
    CHECK_HTML("Plain text message", "Plain text message");
    CHECK_HTML("<?xml version=\"1.0\"?><!DOCTYPE html><p>x</p>", "x");
}

TEST(nested_and_unclosed_tags) {
    /* Like the original's <[^>]+>, a tag ends at the first '>'. */
    CHECK_HTML("<a <b>>text", ">text");
    CHECK_HTML("hello <b", "hello <b");
    CHECK_HTML("<b>bold <i unclosed", "bold <i unclosed");
    CHECK_HTML("x</", "x</");
    CHECK_HTML("<<b>>", "< >");
}

TEST(lone_angle_bracket_is_text) {
    CHECK_HTML("a < b", "a < b");
    CHECK_HTML("1<2 and 3>2", "1<2 and 3>2");
    CHECK_HTML("x <> y", "x <> y");
    CHECK_HTML("<3 you", "<3 you");
    CHECK_HTML("<", "<");
}

TEST(comments_are_dropped) {
    CHECK_HTML("a<!-- hidden <b>tag</b> -->b", "ab");
    CHECK_HTML("a <!-- x --> b", "a b");
    CHECK_HTML("a<!-->b", "ab");
    CHECK_HTML("before<!-- never closed <p>text</p>", "before");
    CHECK_HTML("<!---->", "");
}

TEST(script_and_style_contents_are_dropped) {
    CHECK_HTML("a<script>var x = '<b>' + 1;</script>b", "a b");
    CHECK_HTML("<STYLE type=\"text/css\">p { color: red }</Style>text", "text");
    CHECK_HTML("<script>if (a</b) x();</scripts></script >done", "done");
    CHECK_HTML("<script src=\"x.js\"/>after", "after");
    CHECK_HTML("keep<script>alert(1)", "keep");
    CHECK_HTML("<scripted>kept</scripted>", "kept");
}

TEST(entities_decode_exactly_once) {
    CHECK_HTML("&amp;lt;", "&lt;");
    CHECK_HTML("&amp;amp;", "&amp;");
    CHECK_HTML("&lt;b&gt;not a tag&lt;/b&gt;", "<b>not a tag</b>");
    CHECK_HTML("&quot;quoted&quot; &apos;x&apos;", "\"quoted\" 'x'");
}

TEST(numeric_entities) {
    CHECK_HTML("don&#39;t", "don't");
    CHECK_HTML("don&#x27;t &#X27;", "don't '");
    CHECK_HTML("&#x1F600;", "\xF0\x9F\x98\x80");
    CHECK_HTML("&#128512;", "\xF0\x9F\x98\x80");
    CHECK_HTML("&#233", "\xC3\xA9"); /* ';' is optional */
    CHECK_HTML("&#xD800;", "\xEF\xBF\xBD");
    CHECK_HTML("&#xDFFF;", "\xEF\xBF\xBD");
    CHECK_HTML("&#0;", "\xEF\xBF\xBD");
    CHECK_HTML("&#x110000;", "\xEF\xBF\xBD");
    CHECK_HTML("&#99999999999999999999;", "\xEF\xBF\xBD");
    CHECK_HTML("&#1;", "\xEF\xBF\xBD");
    CHECK_HTML("&#150;", "\xE2\x80\x93");  /* Windows-1252 en dash */
    CHECK_HTML("&#x80;", "\xE2\x82\xAC"); /* Windows-1252 euro */
    CHECK_HTML("&#; &#x; &#xZ;", "&#; &#x; &#xZ;");
}

TEST(named_entities_html4_set) {
    CHECK_HTML("caf&eacute; &Eacute;COLE", "caf\xC3\xA9 \xC3\x89" "COLE");
    CHECK_HTML("wait&hellip;", "wait\xE2\x80\xA6");
    CHECK_HTML("a&mdash;b&ndash;c", "a\xE2\x80\x94" "b\xE2\x80\x93" "c");
    CHECK_HTML("&euro;5 &trade; &copy; &reg; &pound; &yen; &cent;",
               "\xE2\x82\xAC" "5 \xE2\x84\xA2 \xC2\xA9 \xC2\xAE \xC2\xA3 \xC2\xA5 \xC2\xA2");
    /* first and last names of the sorted table, and case-distinguished pairs */
    CHECK_HTML("&AElig;&zwnj;&zwj;", "\xC3\x86\xE2\x80\x8C\xE2\x80\x8D");
    CHECK_HTML("&Dagger;&dagger;&Prime;&prime;", "\xE2\x80\xA1\xE2\x80\xA0\xE2\x80\xB3\xE2\x80\xB2");
    CHECK_HTML("&alpha;&Omega;&thetasym;&sigmaf;", "\xCE\xB1\xCE\xA9\xCF\x91\xCF\x82");
    CHECK_HTML("&larr;&rArr;&infin;&ne;&le;&ge;",
               "\xE2\x86\x90\xE2\x87\x92\xE2\x88\x9E\xE2\x89\xA0\xE2\x89\xA4\xE2\x89\xA5");
    CHECK_HTML("&yuml;&Yuml;&szlig;&thorn;&uuml;&ntilde;",
               "\xC3\xBF\xC5\xB8\xC3\x9F\xC3\xBE\xC3\xBC\xC3\xB1");
    CHECK_HTML("&lsquo;x&rsquo; &ldquo;y&rdquo; &bull; &middot; &frac12; &deg; &times;",
               "\xE2\x80\x98x\xE2\x80\x99 \xE2\x80\x9Cy\xE2\x80\x9D \xE2\x80\xA2 \xC2\xB7 "
               "\xC2\xBD \xC2\xB0 \xC3\x97");
    CHECK_HTML("&spades;&clubs;&hearts;&diams;&loz;&oline;&weierp;&alefsym;",
               "\xE2\x99\xA0\xE2\x99\xA3\xE2\x99\xA5\xE2\x99\xA6\xE2\x97\x8A\xE2\x80\xBE"
               "\xE2\x84\x98\xE2\x84\xB5");
}

TEST(unknown_and_unterminated_names_stay_literal) {
    CHECK_HTML("&unknown; &foo", "&unknown; &foo");
    CHECK_HTML("AT&T and R&D", "AT&T and R&D");
    CHECK_HTML("&EACUTE; &Amp;", "&EACUTE; &Amp;"); /* names are case-sensitive */
    CHECK_HTML("&copy 2024 &eacute", "&copy 2024 &eacute"); /* need ';' */
    CHECK_HTML("a & b && c &;", "a & b && c &;");
    CHECK_HTML("&averyveryverylongname;", "&averyveryverylongname;");
    /* the classic five decode without ';' */
    CHECK_HTML("&amp &lt &gt &quot x&nbsp;y&nbspz", "& < > \" x y&nbspz");
    CHECK_HTML("fish&ampchips", "fish&ampchips");
}

TEST(whitespace_collapses_and_trims) {
    CHECK_HTML("  a \n\t b  \r\n", "a b");
    CHECK_HTML("a&nbsp;&nbsp;&nbsp;b", "a b");
    CHECK_HTML("&nbsp;x&nbsp;", "x");
    CHECK_HTML("a\xC2\xA0" "b", "a b");                   /* raw NBSP */
    CHECK_HTML("&emsp;x&#x3000;y&#10;z&#x2028;", "x y z"); /* decoded Unicode spaces */
    CHECK_HTML("<p> a </p> <p> b </p>", "a b");
    CHECK_HTML(" \n\t ", "");
    CHECK_HTML("&#133;", "\xE2\x80\xA6"); /* &#133; is an ellipsis, not NEL */
}

TEST(invalid_utf8_and_nul_are_repaired) {
    CHECK_HTML("a\xFF" "b", "a\xEF\xBF\xBD" "b");
    CHECK_HTML("\xE2\x82", "\xEF\xBF\xBD\xEF\xBF\xBD");  /* truncated sequence */
    CHECK_HTML("\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD");  /* overlong */
    CHECK_HTML("\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* surrogate */
    CHECK_HTML("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
    CHECK_HTML("&#0;x", "\xEF\xBF\xBDx");
}

TEST(null_and_empty) {
    CHECK_HTML(NULL, "");
    CHECK_HTML("", "");
    CHECK_HTML("<p></p><br>", "");
}

/* Random bytes with tag/entity fragments: the output is always valid UTF-8, has
 * no doubled or edge spaces and no control whitespace. */
TEST(random_input_gives_clean_utf8) {
    static const char *const FRAGS[] = {"<", ">", "&", ";", "#", "x", "amp", "<!--", "-->",
                                        "<script>", "</script>", " ", "\n", "&#x", "\xC3",
                                        "\xA9", "\xFF", "\xE2\x80\xA8", "nbsp", "&nbsp;"};
    rng_t r;
    rng_seed(&r, 12345);
    for (int round = 0; round < 300; round++) {
        buf_t in = BUF_INIT;
        size_t pieces = rng_below(&r, 200);
        for (size_t i = 0; i < pieces; i++) {
            if (rng_below(&r, 3) == 0) {
                char c = (char)(1 + rng_below(&r, 255));
                buf_append(&in, &c, 1);
            } else {
                buf_puts(&in, FRAGS[rng_below(&r, sizeof FRAGS / sizeof FRAGS[0])]);
            }
        }
        char *out = html_to_text(buf_cstr(&in));
        size_t n = strlen(out);
        CHECK(utf8_valid(out, n));
        CHECK(strstr(out, "  ") == NULL);
        CHECK(strpbrk(out, "\t\n\r\f\v") == NULL);
        CHECK(n == 0 || (out[0] != ' ' && out[n - 1] != ' '));
        free(out);
        buf_free(&in);
    }
}

static char *repeat(const char *unit, size_t times) {
    size_t n = strlen(unit);
    char *s = xmalloc(n * times + 1);
    for (size_t i = 0; i < times; i++) memcpy(s + i * n, unit, n);
    s[n * times] = '\0';
    return s;
}

/* 10 MB of ordinary HTML; each unit yields "Hello & world" plus one space. */
TEST(ten_megabytes_of_html) {
    const char *unit = "<p>Hello &amp; world</p>\n"; /* 25 bytes */
    size_t times = 10 * 1000 * 1000 / 25;
    char *in = repeat(unit, times);
    int64_t t0 = mono_ms();
    char *out = html_to_text(in);
    int64_t took = mono_ms() - t0;
    CHECK_INT(strlen(out), times * 14 - 1);
    CHECK(strncmp(out, "Hello & world Hello", 19) == 0);
    /* Linear time: a quadratic scan of 10 MB would take hours, not seconds. */
    CHECK(took < 20000);
    free(out);
    free(in);
}

/* Adversarial inputs that a naive "search for '>' from every '<'" makes quadratic. */
TEST(ten_megabytes_of_unclosed_tags_and_entities) {
    char *in = repeat("<a", 5 * 1000 * 1000);
    int64_t t0 = mono_ms();
    char *out = html_to_text(in);
    CHECK_INT(strlen(out), 10 * 1000 * 1000);
    free(out);
    free(in);

    in = repeat("&amp;", 2 * 1000 * 1000);
    out = html_to_text(in);
    CHECK_INT(strlen(out), 2 * 1000 * 1000);
    free(out);
    free(in);

    in = repeat("<script>", 1000 * 1000); /* never closed */
    out = html_to_text(in);
    CHECK_STR(out, "");
    free(out);
    free(in);
    CHECK(mono_ms() - t0 < 20000);
}
