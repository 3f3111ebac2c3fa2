/* Tests of the conversation generator (tests/support/convgen.c), the gen_sample
 * CLI and the committed sample data generated with them. */
#include "test.h"

#include <ctype.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "llm/llm.h"
#include "support/convgen.h"
#include "util/util.h"

#define SAMPLE_SEED UINT64_C(20260125)
#define SAMPLE_COUNT 400
#define SAMPLE_BASE INT64_C(1769299200) /* 2026-01-25T00:00:00Z */

static const char *root_dir(void) {
    const char *root = getenv("FEEDLINE_ROOT");
    return root ? root : ".";
}

static vocab *load_bundled(void) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/data/theme_vocabulary.json", root_dir());
    vocab *v = vocab_load(path, err, sizeof err);
    if (!v) printf("    vocab_load: %s\n", err);
    return v;
}

static convgen *sample_generator(const vocab *v) {
    convgen_options o;
    convgen_options_default(&o);
    return convgen_new(v, SAMPLE_SEED, &o);
}

/* Lower-cased text the customer wrote: opening (when theirs) and comment parts. */
static char *customer_text(const conversation *c) {
    buf_t b = BUF_INIT;
    if (strcmp(c->source_author_type, "user") == 0) buf_puts(&b, c->source_body);
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i].author == AUTHOR_CUSTOMER && c->parts[i].body) {
            buf_putc(&b, '\n');
            buf_puts(&b, c->parts[i].body);
        }
    char *s = buf_detach(&b);
    for (char *p = s; *p; p++) *p = (char)tolower((unsigned char)*p);
    return s;
}

static int contains_ci(const char *hay, const char *needle) { return strcasestr(hay, needle) != NULL; }

static int has_support_reply(const conversation *c) {
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i].author == AUTHOR_SUPPORT && strcmp(c->parts[i].part_type, "comment") == 0)
            return 1;
    return 0;
}

TEST(same_seed_gives_identical_output_and_other_seeds_differ) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    convgen *a = convgen_new(v, 7, NULL), *b = convgen_new(v, 7, NULL), *d = convgen_new(v, 8, NULL);
    int same = 1, same_truth = 1, differing = 0;
    for (int i = 0; i < 300; i++) {
        conversation ca = {0}, cb = {0}, cd = {0};
        convgen_truth ta, tb, td;
        convgen_next(a, &ca, &ta);
        convgen_next(b, &cb, &tb);
        convgen_next(d, &cd, &td);
        char *la = convgen_to_jsonl(&ca), *lb = convgen_to_jsonl(&cb), *ld = convgen_to_jsonl(&cd);
        json_t *ia = convgen_to_intercom(&ca), *ib = convgen_to_intercom(&cb);
        char *sa = jx_dump(ia), *sb = jx_dump(ib);
        same &= strcmp(la, lb) == 0 && strcmp(sa, sb) == 0;
        same_truth &= memcmp(&ta, &tb, sizeof ta) == 0;
        differing += strcmp(la, ld) != 0;
        free(la), free(lb), free(ld), free(sa), free(sb);
        json_decref(ia), json_decref(ib);
        conv_free(&ca), conv_free(&cb), conv_free(&cd);
    }
    CHECK(same);
    CHECK(same_truth);
    CHECK_INT(differing, 300);
    convgen_free(a), convgen_free(b), convgen_free(d);
    vocab_free(v);
}

TEST(ids_are_unique_15_digit_numbers_over_10000) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    convgen *g = convgen_new(v, 42, NULL);
    strmap_t seen = STRMAP_INIT;
    int dup = 0, bad = 0;
    for (int i = 0; i < 10000; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        size_t n = strlen(c.id);
        bad += n != 15 || strspn(c.id, "0123456789") != n || c.id[0] == '0';
        dup += strmap_has(&seen, c.id);
        strmap_put(&seen, c.id, NULL);
        conv_free(&c);
    }
    CHECK_INT(dup, 0);
    CHECK_INT(bad, 0);
    CHECK_INT(seen.count, 10000);
    strmap_free(&seen, NULL);
    convgen_free(g);
    vocab_free(v);
}

TEST(every_jsonl_line_parses_with_the_required_fields) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    convgen *g = convgen_new(v, 3, NULL);
    int bad = 0, unix_times = 0, iso_times = 0, with_url = 0;
    const int n = 2000;
    for (int i = 0; i < n; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        char *line = convgen_to_jsonl(&c);
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        int ok = o != NULL && strchr(line, '\n') == NULL;
        if (ok) {
            ok &= jx_str(o, "id") && strcmp(jx_str(o, "id"), c.id) == 0;
            json_t *ts = json_object_get(o, "created_at");
            int64_t parsed = -1;
            if (json_is_integer(ts)) {
                unix_times++;
                parsed = json_integer_value(ts);
            } else if (json_is_string(ts)) {
                iso_times++;
                ok &= iso8601_parse(json_string_value(ts), &parsed) == 0;
                ok &= json_string_length(ts) == 20; /* "2026-01-20T10:00:00Z" */
            }
            ok &= parsed == c.created_at;
            ok &= jx_str(o, "subject") != NULL;
            const char *url = jx_str(o, "source_url");
            if (url) {
                with_url++;
                ok &= strncmp(url, "https://", 8) == 0;
            }
            json_t *msgs = jx_arr(o, "messages");
            ok &= msgs && json_array_size(msgs) >= 1;
            for (size_t k = 0; msgs && k < json_array_size(msgs); k++) {
                json_t *m = json_array_get(msgs, k);
                const char *author = jx_str(m, "author"), *body = jx_str(m, "body");
                ok &= author && (strcmp(author, "customer") == 0 || strcmp(author, "support") == 0 ||
                                 strcmp(author, "bot") == 0 || strcmp(author, "note") == 0);
                ok &= body && body[0];
            }
            /* The first message is the opening message, by its author. */
            const char *first = msgs ? jx_str(json_array_get(msgs, 0), "author") : NULL;
            const char *want = strcmp(c.source_author_type, "admin") == 0 ? "support"
                               : strcmp(c.source_author_type, "bot") == 0 ? "bot"
                                                                            : "customer";
            ok &= first && strcmp(first, want) == 0;
        }
        if (!ok && bad++ < 3) printf("    bad line: %s\n", line);
        json_decref(o);
        free(line);
        conv_free(&c);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(unix_times + iso_times, n);
    CHECK(unix_times > n / 20 && unix_times < n * 3 / 20); /* ~10% */
    CHECK(with_url > n / 5);
    convgen_free(g);
    vocab_free(v);
}

TEST(default_sample_has_a_realistic_distribution) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    convgen *g = sample_generator(v);
    strmap_t per_theme = STRMAP_INIT;
    int actionable = 0, noise = 0, dropped = 0, replied = 0, followed_up = 0, foreign = 0;
    int type_seen[16] = {0}, unknown_type = 0, inactive = 0, with_error = 0, email = 0;
    static const char *const foreign_words[] = {"hola", "gracias", "bonjour", "merci", "hallo",
                                                "danke", "olá", "obrigad", "ciao", NULL};
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        int ti = llm_set_index(LLM_CONVERSATION_TYPES, t.conversation_type);
        if (ti < 0) unknown_type++;
        else type_seen[ti] = 1;
        actionable += t.actionable;
        CHECK_INT(t.actionable, llm_set_index(LLM_ACTIONABLE_TYPES, t.conversation_type) >= 0);
        dropped += !t.passes_quality;
        replied += has_support_reply(&c);
        email += strcmp(c.source_type, "email") == 0;
        if (strcmp(t.signature, "-") == 0) {
            noise++;
        } else {
            const vocab_theme *th = vocab_get(v, t.signature);
            inactive += !th || !th->active;
            size_t k = (size_t)(uintptr_t)strmap_get(&per_theme, t.signature);
            strmap_put(&per_theme, t.signature, (void *)(uintptr_t)(k + 1));
        }
        char *text = customer_text(&c);
        int fu = 0;
        for (size_t k = 0; k < c.nparts; k++) fu |= c.parts[k].author == AUTHOR_CUSTOMER;
        followed_up += fu;
        for (int w = 0; foreign_words[w]; w++)
            if (strstr(text, foreign_words[w])) {
                foreign++;
                break;
            }
        with_error += strstr(text, "error 4") != NULL || strstr(text, "error 5") != NULL;
        free(text);
        conv_free(&c);
    }
    size_t themes = 0, big = 0, biggest = 0;
    for (size_t i = 0; i < per_theme.cap; i++)
        if (per_theme.keys[i]) {
            size_t k = (size_t)(uintptr_t)per_theme.vals[i];
            themes++;
            big += k >= 10;
            biggest = MAX(biggest, k);
        }
    printf("    actionable %d, noise %d, dropped %d, replied %d, follow-ups %d, foreign %d, "
           "themes %zu (>=10: %zu, max %zu)\n",
           actionable, noise, dropped, replied, followed_up, foreign, themes, big, biggest);
    CHECK(actionable >= SAMPLE_COUNT * 40 / 100 && actionable <= SAMPLE_COUNT * 75 / 100);
    CHECK(noise >= SAMPLE_COUNT * 25 / 100 && noise <= SAMPLE_COUNT * 35 / 100);
    CHECK(dropped >= SAMPLE_COUNT * 2 / 100 && dropped <= SAMPLE_COUNT * 10 / 100);
    CHECK(replied >= SAMPLE_COUNT * 50 / 100 && replied <= SAMPLE_COUNT * 85 / 100);
    CHECK(followed_up >= SAMPLE_COUNT * 20 / 100);
    CHECK(foreign >= 8);
    CHECK(with_error >= 5);
    CHECK(email >= SAMPLE_COUNT * 35 / 100 && email <= SAMPLE_COUNT * 75 / 100);
    CHECK(big >= 10 && big <= 20);
    CHECK(biggest <= 40);
    CHECK(themes >= 30); /* a long tail, not just the head */
    CHECK_INT(unknown_type, 0);
    CHECK_INT(inactive, 0);
    int kinds = 0;
    for (int i = 0; i < 16; i++) kinds += type_seen[i];
    CHECK(kinds >= 7);
    strmap_free(&per_theme, NULL);
    convgen_free(g);
    vocab_free(v);
}

static int mentions_theme(const char *text, const vocab_theme *th) {
    for (size_t k = 0; k < th->nkeywords; k++)
        if (contains_ci(text, th->keywords[k])) return 1;
    return 0;
}

TEST(theme_conversations_use_their_own_keywords_and_match_their_type) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    convgen *g = convgen_new(v, 11, NULL);
    int themed = 0, own = 0, howto = 0, howto_ok = 0, feature = 0, feature_ok = 0;
    int product = 0, product_ok = 0;
    static const char *const feature_words[] = {"would be", "please add", "plans to", "roadmap",
                                                "request", "suggestion", "idea", "see this",
                                                "if you", "does ", "can i", NULL};
    static const char *const problem_words[] = {"not", "n't", "error", "wrong", "fail", "broken",
                                                "problem", "issue", "bug", "stuck", NULL};
    for (int i = 0; i < 3000; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        if (strcmp(t.signature, "-") != 0 && strcmp(c.source_author_type, "user") == 0) {
            const vocab_theme *th = vocab_get(v, t.signature);
            REQUIRE(th != NULL);
            char *text = customer_text(&c);
            themed++;
            own += mentions_theme(text, th);
            CHECK_STR(t.conversation_type, convgen_theme_type(th));
            if (strcmp(t.conversation_type, "how_to_question") == 0) {
                howto++;
                howto_ok += strchr(text, '?') != NULL || strstr(text, "how") != NULL ||
                            strstr(text, "help") != NULL;
            } else if (strcmp(t.conversation_type, "feature_request") == 0) {
                feature++;
                int hit = 0;
                for (int w = 0; feature_words[w]; w++) hit |= strstr(text, feature_words[w]) != NULL;
                feature_ok += hit;
            } else if (strcmp(t.conversation_type, "product_issue") == 0) {
                product++;
                int hit = 0;
                for (int w = 0; problem_words[w]; w++) hit |= strstr(text, problem_words[w]) != NULL;
                product_ok += hit;
            }
            free(text);
        }
        conv_free(&c);
    }
    printf("    themed %d own-keyword %d; how-to %d/%d feature %d/%d product %d/%d\n", themed, own,
           howto_ok, howto, feature_ok, feature, product_ok, product);
    REQUIRE(themed > 1500);
    /* Typos and casual style may mangle a keyword now and then. */
    CHECK(own >= themed * 93 / 100);
    CHECK(howto > 0 && howto_ok >= howto * 95 / 100);
    CHECK(feature > 0 && feature_ok >= feature * 95 / 100);
    CHECK(product > 0 && product_ok >= product * 90 / 100);
    convgen_free(g);
    vocab_free(v);
}

/* The quality rules of data_surfaces §1.5 (fixed as in conv.h), re-derived here
 * independently of convgen's own implementation. */
static int filter_keeps(const conversation *c) {
    if (strcmp(c->delivered_as, "customer_initiated") != 0) return 0;
    if (strcmp(c->source_author_type, "user") != 0) return 0;
    char norm[4096];
    size_t n = 0;
    for (const char *p = c->source_body; *p && n + 2 < sizeof norm; p++) {
        if (isspace((unsigned char)*p)) {
            if (n && norm[n - 1] != ' ') norm[n++] = ' ';
        } else {
            norm[n++] = (char)tolower((unsigned char)*p);
        }
    }
    while (n && norm[n - 1] == ' ') n--;
    norm[n] = '\0';
    size_t chars = utf8_count(norm, n);
    while (n && strchr(".!?,;: ", norm[n - 1])) norm[--n] = '\0';
    if (!strcmp(norm, "hi") || !strcmp(norm, "hello") || !strcmp(norm, "i have a billing question") ||
        !strcmp(norm, "i have a product question or feedback"))
        return 0;
    return chars >= 20;
}

TEST(quality_truth_follows_the_filter_rules) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    convgen *g = convgen_new(v, 5, NULL);
    int mismatch = 0, kept = 0, dropped = 0, outbound = 0, shorts = 0;
    for (int i = 0; i < 3000; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        int keep = filter_keeps(&c);
        if (keep != t.passes_quality && mismatch++ < 3)
            printf("    mismatch (truth %d): %s\n", t.passes_quality, c.source_body);
        kept += keep;
        dropped += !keep;
        outbound += strcmp(c.delivered_as, "customer_initiated") != 0;
        shorts += strcmp(c.source_author_type, "user") == 0 && strlen(c.source_body) < 20;
        conv_free(&c);
    }
    CHECK_INT(mismatch, 0);
    CHECK(kept > 0 && dropped > 0);
    CHECK(outbound > 0 && shorts > 0); /* several reasons to drop, not one */
    convgen_free(g);
    vocab_free(v);
}

static int part_type_known(const char *s) {
    return s && (!strcmp(s, "comment") || !strcmp(s, "note") || !strcmp(s, "assignment") ||
                 !strcmp(s, "close"));
}

static int author_type_known(const char *s) {
    return s && (!strcmp(s, "user") || !strcmp(s, "lead") || !strcmp(s, "admin") || !strcmp(s, "bot"));
}

/* HTML body back to the plain text it came from (tags become spaces, the five
 * entities convgen writes are decoded, whitespace collapsed). */
static char *html_to_text(const char *h) {
    buf_t raw = BUF_INIT, out = BUF_INIT;
    for (const char *p = h; *p;) {
        if (*p == '<') {
            const char *e = strchr(p, '>');
            if (!e) break;
            int inline_tag = strncmp(p, "<a", 2) == 0 || strncmp(p, "</a", 3) == 0;
            if (!inline_tag) buf_putc(&raw, ' '); /* paragraphs and line breaks */
            p = e + 1;
            continue;
        }
        static const struct { const char *ent, *ch; } ents[] = {
            {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}};
        int done = 0;
        for (size_t i = 0; i < ARRAY_LEN(ents) && !done; i++)
            if (strncmp(p, ents[i].ent, strlen(ents[i].ent)) == 0) {
                buf_puts(&raw, ents[i].ch);
                p += strlen(ents[i].ent);
                done = 1;
            }
        if (!done) buf_putc(&raw, *p++);
    }
    for (const char *p = buf_cstr(&raw); *p; p++) {
        if (isspace((unsigned char)*p)) {
            if (out.len && out.data[out.len - 1] != ' ') buf_putc(&out, ' ');
        } else {
            buf_putc(&out, *p);
        }
    }
    buf_free(&raw);
    while (out.len && out.data[out.len - 1] == ' ') buf_truncate(&out, out.len - 1);
    return buf_detach(&out);
}

static char *collapse(const char *s) {
    buf_t b = BUF_INIT;
    for (const char *p = s; *p; p++) {
        if (isspace((unsigned char)*p)) {
            if (b.len && b.data[b.len - 1] != ' ') buf_putc(&b, ' ');
        } else {
            buf_putc(&b, *p);
        }
    }
    while (b.len && b.data[b.len - 1] == ' ') buf_truncate(&b, b.len - 1);
    return buf_detach(&b);
}

/* Plain text and HTML say the same thing; HTML has no raw quote or ampersand. */
static int html_matches(const char *html, const char *text) {
    if (!html || !text) return html == text;
    if (strncmp(html, "<p>", 3) != 0 || strchr(html, '\'')) return 0;
    for (const char *p = strchr(html, '&'); p; p = strchr(p + 1, '&'))
        if (strncmp(p, "&amp;", 5) && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4) &&
            strncmp(p, "&quot;", 6) && strncmp(p, "&#39;", 5))
            return 0;
    char *a = html_to_text(html), *b = collapse(text);
    int same = strcmp(a, b) == 0;
    if (!same) printf("    html %s\n    text %s\n", a, b);
    free(a);
    free(b);
    return same;
}

TEST(intercom_form_has_the_documented_shape_and_same_content) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    convgen *g = convgen_new(v, 9, NULL);
    int bad = 0, with_parts = 0, entities = 0, notes = 0, assignments = 0, links = 0;
    for (int i = 0; i < 500; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        json_t *o = convgen_to_intercom(&c);
        json_t *src = jx_obj(o, "source");
        json_t *author = jx_obj(src, "author");
        json_t *contacts = jx_arr(jx_obj(o, "contacts"), "contacts");
        json_t *tags = jx_arr(jx_obj(o, "tags"), "tags");
        json_t *parts = jx_arr(jx_obj(o, "conversation_parts"), "conversation_parts");
        int ok = jx_str(o, "type") && !strcmp(jx_str(o, "type"), "conversation");
        ok &= jx_str(o, "id") && !strcmp(jx_str(o, "id"), c.id);
        ok &= json_is_integer(json_object_get(o, "created_at")) &&
              jx_int(o, "created_at", 0) == c.created_at;
        ok &= jx_int(o, "updated_at", 0) >= c.created_at;
        ok &= src && jx_str(src, "type") &&
              (!strcmp(jx_str(src, "type"), "conversation") || !strcmp(jx_str(src, "type"), "email"));
        ok &= jx_str(src, "delivered_as") && !strcmp(jx_str(src, "delivered_as"), c.delivered_as);
        ok &= jx_str(src, "subject") != NULL;
        ok &= json_object_get(src, "url") != NULL; /* string or null */
        ok &= html_matches(jx_str(src, "body"), c.source_body);
        ok &= author && author_type_known(jx_str(author, "type")) && jx_str(author, "id");
        if (author && jx_str(author, "type") && !strcmp(jx_str(author, "type"), "user"))
            ok &= jx_str(author, "email") && strchr(jx_str(author, "email"), '@');
        ok &= contacts && json_array_size(contacts) == 1 &&
              json_object_get(json_array_get(contacts, 0), "external_id") != NULL;
        ok &= tags && json_array_size(tags) == c.ntags;
        for (size_t k = 0; tags && k < json_array_size(tags); k++)
            ok &= jx_str(json_array_get(tags, k), "name") != NULL;
        ok &= parts && json_array_size(parts) == c.nparts &&
              jx_int(jx_obj(o, "conversation_parts"), "total_count", -1) == (int64_t)c.nparts;
        for (size_t k = 0; parts && k < json_array_size(parts); k++) {
            json_t *p = json_array_get(parts, k);
            const char *pt = jx_str(p, "part_type");
            ok &= part_type_known(pt) && jx_str(p, "id");
            ok &= author_type_known(jx_str(jx_obj(p, "author"), "type"));
            ok &= html_matches(jx_str(p, "body"), c.parts[k].body);
            ok &= jx_int(p, "created_at", 0) >= c.created_at;
            notes += pt && !strcmp(pt, "note");
            assignments += pt && !strcmp(pt, "assignment");
            links += jx_str(p, "body") && strstr(jx_str(p, "body"), "<a href=\"https://") != NULL;
        }
        char *dump = jx_dump(o);
        entities += strstr(dump, "&#39;") != NULL;
        free(dump);
        with_parts += c.nparts > 0;
        if (!ok && bad++ < 2) {
            char *s = jx_dump(o);
            printf("    bad: %s\n", s);
            free(s);
        }
        json_decref(o);
        conv_free(&c);
    }
    CHECK_INT(bad, 0);
    CHECK(with_parts > 250);
    CHECK(entities > 50);
    CHECK(notes > 0 && assignments > 0 && links > 0);
    convgen_free(g);
    vocab_free(v);
}

TEST(theme_type_rule_on_the_bundled_vocabulary) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    static const struct { const char *sig, *type; } want[] = {
        {"billing_refund_request", "billing_question"},
        {"billing_cancellation_request", "billing_question"},
        {"billing_plan_change_request", "billing_question"},
        {"billing_unexpected_charge", "billing_question"},
        {"multi_account_question", "how_to_question"},
        {"account_login_failure", "account_issue"},
        {"account_password_reset", "account_issue"},
        {"unsupported_platform_inquiry", "feature_request"},
        {"scheduling_failure", "product_issue"},
        {"pinterest_connection_failure", "product_issue"},
        {"ads_onboarding_error", "product_issue"},
        {"pin_editing_question", "how_to_question"},
        {"consulting_inquiry", "how_to_question"},
        {"smartbio_configuration", "how_to_question"}};
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        const vocab_theme *t = vocab_get(v, want[i].sig);
        REQUIRE(t != NULL);
        CHECK_STR(convgen_theme_type(t), want[i].type);
    }
    vocab_free(v);
}

/* A made-up product: nothing of the bundled vocabulary may leak into the text. */
static const char OTHER_VOCAB[] =
    "{\"url_context_mapping\":{\"/reports/\":\"Reporting\",\"/billing\":\"Money\"},"
    "\"product_area_mapping\":{\"Reporting\":[\"report_export_failure\"],"
    "  \"Money\":[\"invoice_refund_request\"]},"
    "\"themes\":{"
    "\"report_export_failure\":{\"product_area\":\"reporting\",\"component\":\"export\","
    "  \"description\":\"Widget reports fail to export to PDF\","
    "  \"keywords\":[\"export failed\",\"pdf export\",\"report blank\"],"
    "  \"example_intents\":[\"My widget report won't export\"]},"
    "\"invoice_refund_request\":{\"product_area\":\"billing\",\"component\":\"payments\","
    "  \"description\":\"User requesting a refund for a widget invoice\","
    "  \"keywords\":[\"refund\",\"money back\"],"
    "  \"example_intents\":[\"I want a refund for my widgets\"]},"
    "\"gizmo_sync_broken\":{\"product_area\":\"sync\",\"description\":\"\"},"
    "\"old_widget_theme\":{\"product_area\":\"x\",\"status\":\"deprecated\","
    "  \"keywords\":[\"ancient widget\"],\"example_intents\":[\"old widget\"]},"
    "\"meta_review\":{\"product_area\":\"other\",\"keywords\":[\"unclear\"],"
    "  \"example_intents\":[\"[Something that fits nowhere]\"]}}}";

TEST(any_vocabulary_of_the_same_shape_works) {
    char err[256];
    vocab *v = vocab_parse(OTHER_VOCAB, "other.json", err, sizeof err);
    if (!v) printf("    %s\n", err);
    REQUIRE(v != NULL);
    convgen_options o;
    convgen_options_default(&o);
    o.count = 500;
    convgen *g = convgen_new(v, 1, &o);
    int leaked = 0, about[3] = {0}, other = 0, own = 0, themed = 0, report_urls = 0;
    static const char *const foreign_product[] = {"pinterest", "tailwind", "smartloop",
                                                  "instagram", "ghostwriter", "smart.bio", NULL};
    for (int i = 0; i < 500; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        char *line = convgen_to_jsonl(&c);
        for (int w = 0; foreign_product[w]; w++) leaked += contains_ci(line, foreign_product[w]);
        if (!strcmp(t.signature, "report_export_failure")) about[0]++;
        else if (!strcmp(t.signature, "invoice_refund_request")) about[1]++;
        else if (!strcmp(t.signature, "gizmo_sync_broken")) about[2]++;
        else if (strcmp(t.signature, "-") != 0) other++;
        if (strcmp(t.signature, "-") != 0 && strcmp(t.signature, "gizmo_sync_broken") != 0) {
            char *text = customer_text(&c);
            themed++;
            own += mentions_theme(text, vocab_get(v, t.signature));
            free(text);
        }
        if (c.source_url && strstr(c.source_url, "/reports/")) {
            report_urls++;
            CHECK_STR(vocab_url_area(v, c.source_url), "Reporting");
        }
        free(line);
        conv_free(&c);
    }
    CHECK_INT(leaked, 0);
    CHECK(about[0] > 0 && about[1] > 0 && about[2] > 0); /* no keywords or intents: still drawn */
    CHECK_INT(other, 0); /* deprecated and placeholder-only themes are never drawn */
    CHECK(own >= themed * 93 / 100);
    CHECK(report_urls > 0);
    CHECK_STR(convgen_theme_type(vocab_get(v, "invoice_refund_request")), "billing_question");
    CHECK_STR(convgen_theme_type(vocab_get(v, "report_export_failure")), "product_issue");
    convgen_free(g);
    vocab_free(v);
}

TEST(options_control_noise_share_and_time_window) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    convgen_options o;
    convgen_options_default(&o);
    o.noise_share = 0;
    o.base_time = 1700000000;
    o.days = 3;
    convgen *quiet = convgen_new(v, 1, &o);
    o.noise_share = 1;
    convgen *noisy = convgen_new(v, 1, &o);
    int quiet_noise = 0, noisy_themes = 0, outside = 0;
    for (int i = 0; i < 300; i++) {
        conversation a = {0}, b = {0};
        convgen_truth ta, tb;
        convgen_next(quiet, &a, &ta);
        convgen_next(noisy, &b, &tb);
        quiet_noise += strcmp(ta.signature, "-") == 0;
        noisy_themes += strcmp(tb.signature, "-") != 0;
        outside += a.created_at < o.base_time - 3 * 86400 || a.created_at >= o.base_time;
        outside += a.updated_at < a.created_at;
        conv_free(&a);
        conv_free(&b);
        CHECK(a.id == NULL && a.parts == NULL); /* free resets the struct */
    }
    CHECK_INT(quiet_noise, 0);
    CHECK_INT(noisy_themes, 0);
    CHECK_INT(outside, 0);
    convgen_free(quiet);
    convgen_free(noisy);
    vocab_free(v);
}

static char *read_file_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    buf_t b = BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
    int err = ferror(f);
    fclose(f);
    if (err) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b);
}

/* The committed sample must be exactly what the generator makes today:
 * regenerate it with scripts/gen-sample after changing convgen. */
TEST(committed_sample_files_match_the_generator) {
    vocab *v = load_bundled();
    REQUIRE(v != NULL);
    char path[1024];
    snprintf(path, sizeof path, "%s/data/sample_conversations.jsonl", root_dir());
    char *jsonl = read_file_text(path);
    snprintf(path, sizeof path, "%s/data/sample_truth.tsv", root_dir());
    char *tsv = read_file_text(path);
    REQUIRE(jsonl != NULL && tsv != NULL);
    buf_t want_jsonl = BUF_INIT, want_tsv = BUF_INIT;
    buf_puts(&want_tsv, "id\tconversation_type\tsignature\tpasses_quality\n");
    convgen *g = sample_generator(v);
    for (int i = 0; i < SAMPLE_COUNT; i++) {
        conversation c = {0};
        convgen_truth t;
        convgen_next(g, &c, &t);
        char *line = convgen_to_jsonl(&c);
        buf_printf(&want_jsonl, "%s\n", line);
        buf_printf(&want_tsv, "%s\t%s\t%s\t%d\n", c.id, t.conversation_type, t.signature,
                   t.passes_quality);
        free(line);
        conv_free(&c);
    }
    CHECK(strcmp(jsonl, buf_cstr(&want_jsonl)) == 0);
    CHECK(strcmp(tsv, buf_cstr(&want_tsv)) == 0);
    free(jsonl);
    free(tsv);
    buf_free(&want_jsonl);
    buf_free(&want_tsv);
    convgen_free(g);
    vocab_free(v);
}

/* Runs the built gen_sample with args; returns its exit status, output in *out. */
static int run_gen_sample(const char *args, char **out) {
    const char *bdir = getenv("FEEDLINE_BUILD");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s/gen_sample' %s 2>/dev/null", root_dir(),
             bdir ? bdir : "build", args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    buf_t b = BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) buf_append(&b, chunk, n);
    int st = pclose(p);
    *out = buf_detach(&b);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_streams_intercom_envelope_and_rejects_bad_arguments) {
    char *out = NULL;
    int rc = run_gen_sample("--count 25 --seed 4 --format intercom", &out);
    CHECK_INT(rc, 0);
    json_error_t jerr;
    json_t *o = out ? json_loads(out, 0, &jerr) : NULL;
    REQUIRE(o != NULL);
    CHECK_STR(jx_str(o, "type"), "conversation.list");
    CHECK_INT(json_array_size(jx_arr(o, "conversations")), 25);
    CHECK_INT(jx_int(o, "total_count", -1), 25);
    CHECK(jx_obj(json_array_get(jx_arr(o, "conversations"), 0), "source") != NULL);
    json_decref(o);
    free(out);

    rc = run_gen_sample("--count 30", &out);
    CHECK_INT(rc, 0);
    size_t lines = 0;
    for (const char *p = out; p && *p; p++) lines += *p == '\n';
    CHECK_INT(lines, 30);
    free(out);

    static const char *const bad[] = {"--count -1", "--count 12x", "--format xml", "--days 0",
                                      "--base-time yesterday", "--seed", "--nope", "extra",
                                      "--vocab /nonexistent/vocab.json"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        rc = run_gen_sample(bad[i], &out);
        if (rc == 0) printf("    accepted: %s\n", bad[i]);
        CHECK(rc != 0);
        free(out);
    }
    rc = run_gen_sample("--help", &out);
    CHECK_INT(rc, 0);
    CHECK(out && strstr(out, "--format") != NULL);
    free(out);
}
