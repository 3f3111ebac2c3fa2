/* Conversations: building, conv_prepare (digest inputs, transcript, support text,
 * copied fields, content hash) and the quality filter. Covers original-phases.md
 * §13 tests 1, 2, 9 and 10 through conv_prepare. */
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

static void add(conversation *c, const char *author_type, const char *part_type, const char *body) {
    conv_add_part(c, author_from_type(author_type), author_type, part_type, body);
}

/* A complete Intercom-like conversation that passes the quality filter. */
static void sample(conversation *c) {
    conv_init(c);
    c->id = xstrdup("215472646393365");
    c->created_at = 1737460800;
    c->updated_at = 1737464400;
    c->source_type = xstrdup("conversation");
    c->delivered_as = xstrdup("customer_initiated");
    c->source_author_type = xstrdup("user");
    c->source_url = xstrdup("https://example.com/dashboard/v2/communities");
    c->subject = xstrdup("Pins missing");
    c->contact_id = xstrdup("6123abc");
    c->contact_email = xstrdup("nicole@example.com");
    c->external_id = xstrdup("1234567");
    conv_add_tag(c, "Non-Ecomm");
    conv_add_tag(c, "say \"hi\"");
    c->source_body = xstrdup("<p>My pins are published on Pinterest but don&#39;t show in my Communities.</p>");
    add(c, "bot", "assignment", NULL);
    add(c, "admin", "comment", "<p>Hi Nicole! Which board is it?</p>");
    add(c, "user", "comment", "<p>Recipe Ideas. It&#39;s been two months.</p>");
    add(c, "admin", "note", "<p>Internal: check OAuth</p>");
    add(c, "lead", "comment", "<b>also</b> this");
    add(c, "system", "comment", "Closed by rule");
    add(c, "bot", "comment", "Auto reply");
    add(c, "admin", "comment", "<p> </p>");
    add(c, "contact", NULL, "No type given");
    add(c, "user", "close", "closing words");
}

TEST(author_types_map) {
    CHECK_INT(author_from_type("user"), AUTHOR_CUSTOMER);
    CHECK_INT(author_from_type("Lead"), AUTHOR_CUSTOMER);
    CHECK_INT(author_from_type("contact"), AUTHOR_CUSTOMER);
    CHECK_INT(author_from_type("CUSTOMER"), AUTHOR_CUSTOMER);
    CHECK_INT(author_from_type("admin"), AUTHOR_SUPPORT);
    CHECK_INT(author_from_type("support"), AUTHOR_SUPPORT);
    CHECK_INT(author_from_type("teammate"), AUTHOR_SUPPORT);
    CHECK_INT(author_from_type("bot"), AUTHOR_BOT);
    CHECK_INT(author_from_type("Operator"), AUTHOR_BOT);
    CHECK_INT(author_from_type("note"), AUTHOR_NOTE);
    CHECK_INT(author_from_type("system"), AUTHOR_OTHER);
    CHECK_INT(author_from_type(""), AUTHOR_OTHER);
    CHECK_INT(author_from_type(NULL), AUTHOR_OTHER);
}

TEST(build_and_free) {
    conversation c;
    sample(&c);
    CHECK_INT(c.nparts, 10);
    CHECK_INT(c.ntags, 2);
    CHECK_STR(c.parts[1].body, "<p>Hi Nicole! Which board is it?</p>");
    CHECK(c.parts[0].body == NULL);
    CHECK(c.parts[8].part_type == NULL);
    conv_free(&c);
    CHECK(c.parts == NULL && c.nparts == 0 && c.id == NULL);
    conv_free(&c); /* a freed conversation can be freed again */
}

/* §13 tests 9 and 10: labels, order, skipped non-comment parts and blank bodies. */
TEST(transcript_labels_order_and_skips) {
    conversation c;
    sample(&c);
    conv_record r;
    conv_prepare(&c, "intercom", &r);
    CHECK_STR(r.body, "My pins are published on Pinterest but don't show in my Communities.");
    CHECK_STR(r.transcript,
              "[Customer]: My pins are published on Pinterest but don't show in my Communities."
              "\n\n[Support]: Hi Nicole! Which board is it?"
              "\n\n[Customer]: Recipe Ideas. It's been two months."
              "\n\n[Customer]: also this"
              "\n\n[System]: Closed by rule"
              "\n\n[Support]: Auto reply"
              "\n\n[Customer]: No type given");
    conv_record_free(&r);
    conv_free(&c);
}

TEST(transcript_edge_cases) {
    conversation c;
    conv_init(&c);
    conv_record r;
    conv_prepare(&c, "jsonl", &r);
    CHECK_STR(r.transcript, "");
    CHECK_STR(r.body, "");
    CHECK_STR(r.digest, "");
    CHECK_STR(r.id, "");
    conv_record_free(&r);

    /* source only */
    c.source_body = xstrdup("Just the opening message");
    conv_prepare(&c, "jsonl", &r);
    CHECK_STR(r.transcript, "[Customer]: Just the opening message");
    conv_record_free(&r);

    /* no body: the first part starts the text; unknown types are capitalised */
    free(c.source_body);
    c.source_body = xstrdup("<p>  </p>");
    conv_add_part(&c, AUTHOR_OTHER, "SYSTEM", "comment", "first");
    conv_add_part(&c, AUTHOR_OTHER, NULL, "comment", "second");
    conv_add_part(&c, AUTHOR_NOTE, "note", "comment", "internal note");
    conv_add_part(&c, AUTHOR_OTHER, "x]\n\n[y", "comment", "third");
    conv_prepare(&c, "jsonl", &r);
    CHECK_STR(r.transcript, "[System]: first\n\n[Unknown]: second\n\n[X____y]: third");
    conv_record_free(&r);
    conv_free(&c);
}

/* Cut to 15000 characters, then back to the last message start if it lies beyond
 * 7500 characters. Multibyte bodies check that the limits count characters. */
TEST(transcript_cut_backs_up_to_message_boundary) {
    conversation c;
    conv_init(&c);
    c.source_body = xstrdup("0123456789");
    char *part = repeat("\xC3\xBC", 2000); /* ü x 2000 */
    for (int i = 0; i < 10; i++) conv_add_part(&c, AUTHOR_CUSTOMER, "user", "comment", part);
    conv_record r;
    conv_prepare(&c, "jsonl", &r);
    /* "[Customer]: 0123456789" is 22 characters, each further message 2 + 2012;
     * message starts at 22 + k*2014: the last one inside 15000 is at 14120. */
    buf_t want = BUF_INIT;
    buf_puts(&want, "[Customer]: 0123456789");
    for (int k = 0; k < 7; k++) {
        buf_puts(&want, "\n\n[Customer]: ");
        buf_puts(&want, part);
    }
    CHECK_INT(chars(want.data), 14120);
    CHECK_STR(r.transcript, buf_cstr(&want));
    buf_free(&want);
    conv_record_free(&r);
    conv_free(&c);
    free(part);
}

TEST(transcript_cut_without_usable_boundary) {
    conversation c;
    conv_init(&c);
    c.source_body = xstrdup("0123456789");
    char *part = repeat("\xE2\x82\xAC", 20000); /* € x 20000 */
    conv_add_part(&c, AUTHOR_SUPPORT, "admin", "comment", part);
    conv_record r;
    conv_prepare(&c, "jsonl", &r);
    /* the only boundary is at 22 <= 7500: keep exactly 15000 characters */
    CHECK_INT(chars(r.transcript), TRANSCRIPT_MAX_CHARS);
    CHECK(utf8_valid(r.transcript, strlen(r.transcript)));
    CHECK(strncmp(r.transcript, "[Customer]: 0123456789\n\n[Support]: \xE2\x82\xAC", 38) == 0);
    conv_record_free(&r);
    conv_free(&c);
    free(part);
}

TEST(support_text_format_and_count) {
    conversation c;
    sample(&c);
    conv_record r;
    conv_prepare(&c, "intercom", &r);
    CHECK_STR(r.support_text, "[Support 1]: Hi Nicole! Which board is it?\n\n[Support 2]: Auto reply");
    CHECK_INT(r.support_count, 2);
    conv_record_free(&r);
    conv_free(&c);

    conv_init(&c);
    c.source_body = xstrdup("question");
    conv_prepare(&c, "jsonl", &r);
    CHECK_STR(r.support_text, "");
    CHECK_INT(r.support_count, 0);
    conv_record_free(&r);
    conv_free(&c);
}

TEST(support_text_caps_messages_and_length) {
    conversation c;
    conv_init(&c);
    c.source_body = xstrdup("question");
    char *long_reply = repeat("\xC3\xA4", 1500); /* ä x 1500 */
    conv_add_part(&c, AUTHOR_SUPPORT, "admin", "comment", long_reply);
    char body[32];
    for (int i = 2; i <= 7; i++) {
        snprintf(body, sizeof body, "reply %d", i);
        conv_add_part(&c, i % 2 ? AUTHOR_BOT : AUTHOR_SUPPORT, i % 2 ? "bot" : "admin", "comment", body);
        conv_add_part(&c, AUTHOR_CUSTOMER, "user", "comment", "customer says");
    }
    conv_record r;
    conv_prepare(&c, "jsonl", &r);
    CHECK_INT(r.support_count, 7);
    buf_t want = BUF_INIT;
    buf_puts(&want, "[Support 1]: ");
    buf_append(&want, long_reply, 2000); /* 1000 characters */
    buf_puts(&want, "\n\n[Support 2]: reply 2\n\n[Support 3]: reply 3\n\n[Support 4]: reply 4"
                    "\n\n[Support 5]: reply 5");
    CHECK_STR(r.support_text, buf_cstr(&want));
    CHECK(strstr(r.support_text, "[Support 6]") == NULL);
    buf_free(&want);
    conv_record_free(&r);
    conv_free(&c);
    free(long_reply);
}

/* §13 tests 1 and 2: only customer comments feed the digest, stripped (entities
 * decoded too), blank ones skipped, order kept. */
TEST(digest_uses_only_customer_comments) {
    conversation c;
    conv_init(&c);
    c.source_body = xstrdup("<p>Help please</p>");
    add(&c, "admin", "comment", "Error \"ERR_500\" on the scheduler, see https://x.y");
    add(&c, "bot", "comment", "Error \"ERR_501\" on the scheduler, see https://x.y");
    add(&c, "user", "assignment", "Error \"ERR_502\" on the scheduler, see https://x.y");
    add(&c, "user", "note", "Error \"ERR_503\" on the scheduler, see https://x.y");
    conv_record r;
    conv_prepare(&c, "intercom", &r);
    CHECK_STR(r.digest, "Help please");
    conv_record_free(&r);

    add(&c, "user", "comment", "<p>   </p>");
    add(&c, "lead", "comment", "<p>Error &quot;Failed&nbsp;to post&quot; in the <b>scheduler</b></p>");
    add(&c, "contact", "comment", "<p>Error &quot;Failed again&quot; in the <b>scheduler</b></p>");
    conv_prepare(&c, "intercom", &r);
    CHECK_STR(r.digest, "Help please\n\n---\n\nError \"Failed to post\" in the scheduler");
    conv_record_free(&r);
    conv_free(&c);
}

TEST(fields_are_copied_and_repaired) {
    conversation c;
    sample(&c);
    free(c.subject);
    c.subject = xstrdup("bad \xFF subject");
    free(c.external_id);
    c.external_id = NULL;
    conv_record r;
    conv_prepare(&c, "intercom", &r);
    CHECK_STR(r.id, "215472646393365");
    CHECK_INT(r.created_at, 1737460800);
    CHECK_INT(r.updated_at, 1737464400);
    CHECK_STR(r.source, "intercom");
    CHECK_STR(r.source_type, "conversation");
    CHECK_STR(r.source_url, "https://example.com/dashboard/v2/communities");
    CHECK_STR(r.subject, "bad \xEF\xBF\xBD subject");
    CHECK_STR(r.contact_id, "6123abc");
    CHECK_STR(r.contact_email, "nicole@example.com");
    CHECK(r.external_id == NULL);
    CHECK_STR(r.tags_json, "[\"Non-Ecomm\",\"say \\\"hi\\\"\"]");
    CHECK_INT(strlen(r.content_hash), 64);
    conv_record_free(&r);
    conv_free(&c);

    conv_init(&c);
    conv_prepare(&c, "jsonl", &r);
    CHECK_STR(r.tags_json, "[]");
    CHECK(r.subject == NULL && r.source_type == NULL);
    conv_record_free(&r);
    conv_free(&c);
}

static void hash_of(const conversation *c, const char *source, char out[65]) {
    conv_record r;
    conv_prepare(c, source, &r);
    memcpy(out, r.content_hash, 65);
    conv_record_free(&r);
}

/* Replaces *field with value (NULL allowed). */
static void set_str(char **field, const char *value) {
    free(*field);
    *field = xstrdup(value);
}

TEST(content_hash_is_stable_and_sensitive) {
    conversation a, b;
    sample(&a);
    sample(&b);
    char ha[65], hb[65];
    hash_of(&a, "intercom", ha);
    hash_of(&b, "intercom", hb);
    CHECK_STR(ha, hb);
    conv_free(&b);

    /* every change to a stored field changes the hash */
    for (int field = 0; field < 16; field++) {
        sample(&b);
        const char *source = "intercom";
        switch (field) {
        case 0: set_str(&b.id, "215472646393366"); break;
        case 1: b.created_at++; break;
        case 2: b.updated_at = 0; break;
        case 3: source = "jsonl"; break;
        case 4: set_str(&b.source_type, "email"); break;
        case 5: set_str(&b.source_url, NULL); break;
        case 6: set_str(&b.subject, ""); break; /* "" differs from "Pins missing" */
        case 7: set_str(&b.contact_id, "6123abd"); break;
        case 8: set_str(&b.contact_email, "n@example.com"); break;
        case 9: set_str(&b.external_id, NULL); break;
        case 10: conv_add_tag(&b, "Billing"); break;
        case 11: set_str(&b.source_body, "<p>My pins are published on Pinterest but don&#39;t show.</p>"); break;
        case 12: set_str(&b.parts[2].body, "Recipe Ideas. It has been two months."); break;
        case 13: set_str(&b.parts[1].body, "Which board?"); break;
        case 14: add(&b, "admin", "comment", "One more reply"); break;
        case 15: add(&b, "user", "comment", "Error \"ERR_X\" in the scheduler again"); break;
        }
        hash_of(&b, source, hb);
        if (strcmp(ha, hb) == 0) printf("    field change %d kept the hash\n", field);
        CHECK(strcmp(ha, hb) != 0);
        conv_free(&b);
    }

    /* NULL and "" are different contents */
    sample(&b);
    set_str(&b.subject, NULL);
    hash_of(&b, "intercom", hb);
    char hc[65];
    set_str(&b.subject, "");
    hash_of(&b, "intercom", hc);
    CHECK(strcmp(hb, hc) != 0);
    conv_free(&b);

    /* changes that do not reach a stored field keep the hash */
    sample(&b);
    set_str(&b.parts[3].body, "<p>Another internal note</p>");
    set_str(&b.delivered_as, "admin_initiated");
    hash_of(&b, "intercom", hb);
    CHECK_STR(ha, hb);
    conv_free(&b);
    conv_free(&a);
}

/* quality filter ------------------------------------------------------------ */

static enum quality_verdict quality(const char *delivered, const char *author, const char *body,
                                    char *reason, size_t len) {
    conversation c;
    conv_init(&c);
    c.delivered_as = xstrdup(delivered);
    c.source_author_type = xstrdup(author);
    c.source_body = xstrdup(body);
    enum quality_verdict v = conv_quality(&c, reason, len);
    conv_free(&c);
    return v;
}

/* The delivered_as value that passes rule 1. */
#define CI "customer_initiated"
#define LONG_BODY "<p>My pins are not showing in my Communities tab</p>"

TEST(quality_rules_in_order) {
    char reason[128];
    CHECK_INT(quality(CI, "user", LONG_BODY, reason, sizeof reason), QUALITY_OK);
    CHECK_STR(reason, "");

    /* rule 1 wins over everything else */
    CHECK_INT(quality("admin_initiated", "admin", "hi", reason, sizeof reason),
              QUALITY_NOT_CUSTOMER_INITIATED);
    CHECK_STR(reason, "not customer_initiated (admin_initiated)");
    CHECK_INT(quality(NULL, "user", LONG_BODY, reason, sizeof reason), QUALITY_NOT_CUSTOMER_INITIATED);
    CHECK_STR(reason, "not customer_initiated (none)");

    /* rule 2: only "user"; leads are rejected as the opening author */
    CHECK_INT(quality(CI, "lead", "hi", reason, sizeof reason), QUALITY_AUTHOR_NOT_USER);
    CHECK_STR(reason, "author is lead");
    CHECK_INT(quality(CI, NULL, LONG_BODY, reason, sizeof reason), QUALITY_AUTHOR_NOT_USER);
    CHECK_STR(reason, "author is none");

    /* rule 3 (templates) before rule 4 (length) */
    CHECK_INT(quality(CI, "user", "Hi!", reason, sizeof reason), QUALITY_TEMPLATE_MESSAGE);
    CHECK_STR(reason, "template message");
    CHECK_INT(quality(CI, "user", "hello", NULL, 0), QUALITY_TEMPLATE_MESSAGE);
    CHECK_INT(quality(CI, "user", "<p>Hello there.</p>", NULL, 0), QUALITY_TEMPLATE_MESSAGE);
    CHECK_INT(quality(CI, "user", " HEY ?! ", NULL, 0), QUALITY_TEMPLATE_MESSAGE);
    CHECK_INT(quality(CI, "user", "Help,", NULL, 0), QUALITY_TEMPLATE_MESSAGE);
    CHECK_INT(quality(CI, "user", "I have a billing question?", NULL, 0),
              QUALITY_TEMPLATE_MESSAGE);
    CHECK_INT(quality(CI, "user", "<p>I have a product question or feedback</p>", NULL, 0),
              QUALITY_TEMPLATE_MESSAGE);
    CHECK_INT(quality(CI, "user", "I have a billing question about my invoice", NULL, 0),
              QUALITY_OK);

    /* rule 4: fewer than 20 characters of stripped text */
    CHECK_INT(quality(CI, "user", "hi there friend", reason, sizeof reason),
              QUALITY_BODY_TOO_SHORT);
    CHECK_STR(reason, "body too short (15 chars)");
    CHECK_INT(quality(CI, "user", "<p>\xC3\xA9\xC3\xA9\xC3\xA9</p>", reason, sizeof reason),
              QUALITY_BODY_TOO_SHORT);
    CHECK_STR(reason, "body too short (3 chars)");
    CHECK_INT(quality(CI, "user", NULL, reason, sizeof reason), QUALITY_BODY_TOO_SHORT);
    CHECK_STR(reason, "body too short (0 chars)");
    CHECK_INT(quality(CI, "user", "0123456789012345678", NULL, 0), QUALITY_BODY_TOO_SHORT);
    CHECK_INT(quality(CI, "user", "01234567890123456789", NULL, 0), QUALITY_OK);
    /* entities count as one character each after decoding */
    CHECK_INT(quality(CI, "user", "&lt;&lt;&lt;&lt;&lt;&lt;&lt;&lt;&lt;&lt;", reason,
                      sizeof reason),
              QUALITY_BODY_TOO_SHORT);
    CHECK_STR(reason, "body too short (10 chars)");
}

TEST(quality_reason_is_cut_safely) {
    char reason[20];
    CHECK_INT(quality("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", "user", LONG_BODY, reason,
                      sizeof reason),
              QUALITY_NOT_CUSTOMER_INITIATED);
    CHECK(strlen(reason) < sizeof reason);
    CHECK(utf8_valid(reason, strlen(reason)));
    CHECK(strncmp(reason, "not customer_init", 17) == 0);
    /* invalid bytes in the value are repaired */
    char big[64];
    CHECK_INT(quality(CI, "ad\xFFmin", LONG_BODY, big, sizeof big), QUALITY_AUTHOR_NOT_USER);
    CHECK_STR(big, "author is ad\xEF\xBF\xBDmin");
}

TEST(quality_verdict_names) {
    CHECK_STR(quality_verdict_name(QUALITY_OK), "ok");
    CHECK_STR(quality_verdict_name(QUALITY_NOT_CUSTOMER_INITIATED), "not_customer_initiated");
    CHECK_STR(quality_verdict_name(QUALITY_AUTHOR_NOT_USER), "author_not_user");
    CHECK_STR(quality_verdict_name(QUALITY_TEMPLATE_MESSAGE), "template_message");
    CHECK_STR(quality_verdict_name(QUALITY_BODY_TOO_SHORT), "body_too_short");
}
