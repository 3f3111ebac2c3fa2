/* Specificity score, similarity and the customer digest: original-phases.md §13
 * tests 1-8 adapted to the C API, plus the exact rule boundaries. */
#include "test.h"

#include <stdlib.h>

#include "text/text.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/utf8.h"

static char *repeat(const char *unit, size_t times) {
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < times; i++) buf_puts(&b, unit);
    return buf_detach(&b);
}

static size_t chars(const char *s) { return utf8_count(s, strlen(s)); }

/* ---- §13 test 3: empty, short and generic ---- */
TEST(score_empty_short_and_generic) {
    CHECK_INT(message_specificity(""), -2);
    CHECK_INT(message_specificity(NULL), -2);
    CHECK(message_specificity("ok") <= -2);
    CHECK(message_specificity("thanks") <= -2);
    CHECK(message_specificity("Hi there") <= -2);
    CHECK(message_specificity("ok got it") <= -2);
    CHECK(message_specificity("hello") <= -2);
    /* short and generic both apply */
    CHECK_INT(message_specificity("thanks"), -4);
    /* generic only below 50 characters; tokens keep punctuation */
    CHECK_INT(message_specificity("hi this is a longer message"), -2);
    CHECK_INT(message_specificity("hi, this is a longer message"), 0);
    CHECK_INT(message_specificity("hi this is a much longer message that exceeds fifty chars"), 0);
    CHECK_INT(message_specificity("Please"), -4); /* lower-cased before matching */
}

TEST(score_length_is_in_characters) {
    char *nineteen = repeat("\xC3\xA9", 19); /* 38 bytes, 19 characters */
    char *twenty = repeat("\xC3\xA9", 20);
    CHECK_INT(message_specificity(nineteen), -2);
    CHECK_INT(message_specificity(twenty), 0);
    free(nineteen);
    free(twenty);
}

/* ---- §13 test 4: each positive rule ---- */
TEST(score_quoted_text) {
    CHECK(message_specificity("The error message says \"Failed to connect to Pinterest API\"") >= 3);
    CHECK_INT(message_specificity("He said \"abcde\" to me, fine then"), 3);
    CHECK_INT(message_specificity("He said \"abcd\" to me, fine then"), 0);  /* 4 < 5 */
    CHECK_INT(message_specificity("He said 'abcde\" to me, fine then"), 3);  /* mixed quotes */
    char *long_quote = repeat("x", 500);
    char *msg = xasprintf("'%s'", long_quote);
    CHECK_INT(message_specificity(msg), 3);
    free(msg);
    msg = xasprintf("'%sx'", long_quote); /* 501 characters between the quotes */
    CHECK_INT(message_specificity(msg), 0);
    free(msg);
    free(long_quote);
}

TEST(score_error_keywords) {
    static const char *const MSGS[] = {"I got an error when posting", "The scheduler failed to work",
                                       "I cannot upload images", "My pins doesn't work anymore",
                                       "The feature is broken"};
    for (size_t i = 0; i < sizeof MSGS / sizeof MSGS[0]; i++) CHECK(message_specificity(MSGS[i]) >= 2);
    /* counted once however many keywords appear */
    CHECK_INT(message_specificity("Things look stuck and wrong today"), 2);
    CHECK_INT(message_specificity("Things look STUCK and WRONG today"), 2);
}

TEST(score_error_codes) {
    CHECK(message_specificity("I'm seeing error 500") >= 2);
    CHECK(message_specificity("Got ERR_CONNECTION_REFUSED") >= 2);
    CHECK(message_specificity("Error code E1234") >= 2);
    /* the code rule alone */
    CHECK_INT(message_specificity("The server returned code 50012 today."), 2);
    CHECK_INT(message_specificity("The server returned code 500123 today."), 0); /* 6 digits */
    CHECK_INT(message_specificity("The server returned code 12 today ..."), 0);   /* 2 digits */
    CHECK_INT(message_specificity("Reference E1234 appears in the box"), 2);
    CHECK_INT(message_specificity("Reference e1234 appears in the box"), 2);
    CHECK_INT(message_specificity("Reference X1234 appears in the box"), 0); /* no word start */
    CHECK_INT(message_specificity("Reference 1234x appears in the box"), 0); /* no word end */
    CHECK_INT(message_specificity("Saw ERR-timeout in the box today"), 2);
    /* X_ERROR always contains the keyword "error" too (+2); the code rule adds +2
     * only when the letters before "_ERROR" form the whole word start */
    CHECK_INT(message_specificity("Saw FOO_ERROR in the box today"), 4);
    CHECK_INT(message_specificity("Saw foo_error in the box today"), 4);
    CHECK_INT(message_specificity("Saw FOO_BAR_ERROR in the box today"), 2);
    /* "error" itself matches ERR\w{1,50} in the original, so it scores keyword + code */
    CHECK_INT(message_specificity("I see an error on the page"), 4);
}

TEST(score_feature_nouns) {
    static const char *const MSGS[] = {"My drafts are not saving", "The scheduler is acting up",
                                       "I need to upload a video", "My pins are duplicating"};
    for (size_t i = 0; i < sizeof MSGS / sizeof MSGS[0]; i++) CHECK(message_specificity(MSGS[i]) >= 1);
    CHECK_INT(message_specificity("My account page is blank today"), 1);
    CHECK_INT(message_specificity("My Pinterest page is blank today"), 1);
    CHECK_INT(message_specificity("My pinterest. page is blank today"), 0); /* punctuation kept */
}

TEST(score_url_or_attachment) {
    CHECK(message_specificity("Here's the link: https://example.com/error") >= 1);
    CHECK(message_specificity("I've attached a screenshot") >= 1);
    CHECK(message_specificity("See the attachment below") >= 1);
    CHECK_INT(message_specificity("look at https://example.com/x for details"), 1);
    CHECK_INT(message_specificity("look at WWW.example.com for the details"), 1);
    CHECK_INT(message_specificity("visit www. for more info here"), 0);
    CHECK_INT(message_specificity("I attached it to this message for you"), 1);
    /* URL and attachment words together still give +1 */
    CHECK_INT(message_specificity("I attached https://example.com/a to this message"), 1);
}

/* ---- §13 test 5 ---- */
TEST(score_combined) {
    const char *high = "Error \"ERR_TIMEOUT\" when using the scheduler to upload pins";
    /* quoted +3, keyword +2, code +2, feature +1 */
    CHECK_INT(message_specificity(high), 8);
    CHECK(message_specificity(high) >= 5);
    CHECK(message_specificity(high) > message_specificity("thanks"));
}

/* ---- §13 test 8 ---- */
TEST(similarity_rules) {
    CHECK(messages_similar("hello world", "hello world"));
    CHECK(messages_similar("Hello World", "hello world"));
    CHECK(messages_similar("  Hello World\n", "hello world"));
    CHECK(messages_similar("short", "this is a short message"));
    CHECK(messages_similar("this is a short message", "SHORT"));
    CHECK(!messages_similar("The scheduler is broken", "I love using this product"));
    CHECK(!messages_similar("", ""));
    CHECK(!messages_similar("hello", ""));
    CHECK(!messages_similar("   ", "anything")); /* blank is empty (the original said yes) */
    CHECK(!messages_similar(NULL, "x"));
    /* word overlap: 9 of 10 words shared -> similar, 8 of 10 -> not */
    CHECK(messages_similar("a b c d e f g h i j", "a b c d e f g h i k"));
    CHECK(!messages_similar("a b c d e f g h i j", "a b c d e f g h k l"));
    /* same word set, different order */
    CHECK(messages_similar("b a a", "a a b"));
    /* same word set but lengths too different */
    CHECK(!messages_similar("b a", "a a a a a a a b"));
    /* non-ASCII case folding */
    CHECK(messages_similar("\xC3\x89" "COLE ouverte", "\xC3\xA9" "cole ouverte"));
}

TEST(texts_say_the_same_across_greetings_and_lead_ins) {
    char *f = text_fold("  Can't SYNC!!  my-store ");
    CHECK_STR(f, "can t sync my store");
    free(f);
    /* a greeting or a lead-in before the same words */
    CHECK(texts_say_the_same("How do I close my account?",
                             "Hello team Help: how do I close my account."));
    CHECK(texts_say_the_same("hello team can i add accounts from different email addresses?",
                             "Hey quick one - Can I add accounts from different email addresses?"));
    CHECK(texts_say_the_same("I can't work out how this works: can I add accounts from different "
                             "email addresses.",
                             "hello team can i add accounts from different email addresses?"));
    CHECK(texts_say_the_same("Issue: AI generation fails with error, times out, or garbles",
                             "Problem: AI generation fails with error, times out, or garbles."));
    CHECK(texts_say_the_same("not pulling pins", "Not pulling Pins into SmartLoop"));
    CHECK(texts_say_the_same("M4U", "m4u"));
    CHECK(texts_say_the_same("", ""));
    /* different requests in the same words, texts that only end alike */
    CHECK(!texts_say_the_same("How do I cancel my plan?", "How do I change my plan?"));
    CHECK(!texts_say_the_same("The app crashes when I try to log in",
                              "I get error 500 when I try to log in"));
    CHECK(!texts_say_the_same("Pins are not posting to my board",
                              "Pins are posting twice to my board"));
    /* one word is not the same as a text it is in */
    CHECK(!texts_say_the_same("error", "error canceling"));
    CHECK(!texts_say_the_same("or", "times out, or produces garbled output"));
    CHECK(!texts_say_the_same(NULL, "x"));
    CHECK(!texts_say_the_same("x", NULL));
}

/* ---- §13 tests 6 and 7 ---- */
TEST(digest_is_source_without_customer_messages) {
    char *d = build_customer_digest("Initial customer message", NULL, 0, 2000);
    CHECK_STR(d, "Initial customer message");
    free(d);
    d = build_customer_digest("  padded  ", NULL, 0, 2000);
    CHECK_STR(d, "padded");
    free(d);
    d = build_customer_digest(NULL, NULL, 0, 2000);
    CHECK_STR(d, "");
    free(d);
}

TEST(digest_combines_source_and_most_specific) {
    const char *msgs[] = {"thanks", "Error \"Failed to post\" when using the scheduler", "ok"};
    char *d = build_customer_digest("Hi there", msgs, 3, 2000);
    CHECK_STR(d, "Hi there\n\n---\n\nError \"Failed to post\" when using the scheduler");
    free(d);
}

TEST(digest_is_source_when_source_most_specific) {
    const char *src = "Error \"Connection failed\" when posting to Pinterest";
    const char *msgs[] = {"thanks", "ok got it"};
    char *d = build_customer_digest(src, msgs, 2, 2000);
    CHECK_STR(d, src);
    free(d);
    /* a tie also keeps the source */
    const char *tie[] = {"My drafts vanish overnight now"};
    d = build_customer_digest("The queue stops every morning", tie, 1, 2000);
    CHECK_STR(d, "The queue stops every morning");
    free(d);
}

TEST(digest_does_not_duplicate_similar_best) {
    const char *msgs[] = {"The scheduler is broken"};
    char *d = build_customer_digest("The scheduler is broken", msgs, 1, 2000);
    CHECK_STR(d, "The scheduler is broken");
    free(d);
    /* the best message contains the source: similar, source only */
    const char *msgs2[] = {"Help: the scheduler is broken since Monday, error 500"};
    d = build_customer_digest("the scheduler is broken", msgs2, 1, 2000);
    CHECK_STR(d, "the scheduler is broken");
    free(d);
}

TEST(digest_ties_go_to_first_message) {
    const char *msgs[] = {"Posting to my board fails", "Posting to my queue fails"};
    char *d = build_customer_digest("Hello there team", msgs, 2, 2000);
    CHECK_STR(d, "Hello there team\n\n---\n\nPosting to my board fails");
    free(d);
}

TEST(digest_respects_max_length) {
    char *a = repeat("A", 1000), *b = repeat("B", 1000);
    const char *msgs[] = {b};
    char *d = build_customer_digest(a, msgs, 1, 500);
    CHECK(chars(d) <= 500);
    free(d);
    free(a);
    free(b);
}

/* 60/40 split of max_chars - 7: 1195 + 7 + 798 for 2000, 295 + 7 + 198 for 500. */
TEST(digest_split_is_sixty_forty) {
    char *src = repeat("s", 3000), *tail = repeat("m", 3000);
    char *msg = xasprintf("Error \"ERR_X\" happens %s", tail);
    const char *msgs[] = {msg};
    char *d = build_customer_digest(src, msgs, 1, 2000);
    buf_t want = BUF_INIT;
    buf_append(&want, src, 1195);
    buf_puts(&want, "\n\n---\n\n");
    buf_append(&want, msg, 798);
    CHECK_STR(d, buf_cstr(&want));
    free(d);
    buf_reset(&want);
    d = build_customer_digest(src, msgs, 1, 500);
    buf_append(&want, src, 295);
    buf_puts(&want, "\n\n---\n\n");
    buf_append(&want, msg, 198);
    CHECK_STR(d, buf_cstr(&want));
    free(d);
    buf_free(&want);
    free(msg);
    free(src);
    free(tail);
}

TEST(digest_limit_counts_characters_not_bytes) {
    char *src = repeat("\xC3\xA9", 3000);              /* é: 2 bytes */
    char *tail = repeat("\xE2\x82\xAC", 3000);         /* €: 3 bytes */
    char *msg = xasprintf("Error \"ERR_X\" in scheduler %s", tail);
    const char *msgs[] = {msg};
    char *d = build_customer_digest(src, msgs, 1, 2000);
    CHECK(utf8_valid(d, strlen(d)));
    CHECK_INT(chars(d), 2000);
    CHECK(strstr(d, "\n\n---\n\nError \"ERR_X\"") != NULL);
    free(d);
    /* the source alone, cut on a character boundary */
    d = build_customer_digest(src, NULL, 0, 1999);
    CHECK_INT(chars(d), 1999);
    CHECK_INT(strlen(d), 3998);
    free(d);
    free(msg);
    free(src);
    free(tail);
}

TEST(digest_with_empty_source_is_the_best_message) {
    const char *msgs[] = {"Actual issue description"};
    char *d = build_customer_digest("", msgs, 1, 2000);
    CHECK_STR(d, "Actual issue description");
    free(d);
}

TEST(digest_input_limits) {
    /* Only the first 100 messages are considered. */
    const char *msgs[101];
    for (int i = 0; i < 100; i++) msgs[i] = "thanks";
    msgs[100] = "Error \"ERR_X\" in the scheduler";
    char *d = build_customer_digest("Something is off with it", msgs, 101, 2000);
    CHECK_STR(d, "Something is off with it");
    free(d);
    d = build_customer_digest("Something is off with it", msgs + 1, 100, 2000);
    CHECK_STR(d, "Something is off with it\n\n---\n\nError \"ERR_X\" in the scheduler");
    free(d);
    /* Each message is cut to 100 000 characters before scoring. */
    char *pad = repeat("x", 100000);
    char *late = xasprintf("%s \"ERR_ABC happened\"", pad);
    const char *one[] = {late};
    d = build_customer_digest("Something is off with it", one, 1, 2000);
    CHECK_STR(d, "Something is off with it");
    free(d);
    free(late);
    free(pad);
}

TEST(digest_repairs_invalid_utf8) {
    const char *msgs[] = {"Error \"ERR_X\" in the \xFF scheduler"};
    char *d = build_customer_digest("bad \xC3 byte here", msgs, 1, 2000);
    CHECK(utf8_valid(d, strlen(d)));
    CHECK(strstr(d, "bad \xEF\xBF\xBD byte here") == d);
    free(d);
}

TEST(truncate_and_trim_helpers) {
    char s[] = "h\xC3\xA9llo w\xC3\xB6rld";
    text_truncate_chars(s, 4);
    CHECK_STR(s, "h\xC3\xA9ll");
    text_truncate_chars(s, 100);
    CHECK_STR(s, "h\xC3\xA9ll");
    text_truncate_chars(s, 0);
    CHECK_STR(s, "");
    char t[] = " \t\n padded text \r\n";
    CHECK_STR(text_trim(t), "padded text");
    char u[] = "   ";
    CHECK_STR(text_trim(u), "");
    CHECK(text_trim(NULL) == NULL);
}
