/* convgen — owns the synthetic support-conversation generator: the draw
 * distribution (a Zipf-like head/tail over the vocabulary's active themes plus
 * categories of non-actionable noise), the text templates that turn a theme's
 * intents, keywords and description into customer messages and support replies,
 * the ground truth, and the JSONL / Intercom serialisers.
 *
 * Templates are "spintax": {a|b|c} picks one alternative (nested freely) and $NAME
 * inserts a variable (see var_value). Vocabulary text is inserted verbatim, never
 * re-expanded, so any vocabulary string is safe. No product name appears in the
 * templates; they are generic support-chat language. */
#include "support/convgen.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm/llm.h"
#include "util/util.h"

#define DEFAULT_COUNT 400
#define DEFAULT_BASE_TIME INT64_C(1769299200) /* 2026-01-25T00:00:00Z */
#define DEFAULT_DAYS 30
#define DEFAULT_NOISE 0.30
/* Deck blocks are capped so a 10M-conversation run keeps bounded memory; each
 * block has the exact target distribution. */
#define MAX_DECK 20000
/* Share of theme conversations that go to the popular head (the first ~20% of
 * themes in the seeded popularity order), and the Zipf exponents inside head and
 * tail. Tuned so 400 conversations give ~13 themes with 12-30 each and a tail of
 * 0-3. */
#define HEAD_SHARE 0.80
#define HEAD_FRACTION 0.20
#define HEAD_EXPONENT 0.35
#define TAIL_EXPONENT 0.45
#define URL_BASE "https://app.example.com"
#define MAX_URL_PATTERNS 16

/* ---------------------------------------------------------------- types --- */

enum ctype_ix {
    CT_PRODUCT = 0,
    CT_HOWTO,
    CT_FEATURE,
    CT_ACCOUNT,
    CT_BILLING,
    CT_CONFIG,
    CT_GENERAL,
    CT_SPAM,
    CT_COUNT
};

/* Same order as enum ctype_ix; the strings are LLM_CONVERSATION_TYPES values. */
static const char *const CTYPE_NAMES[CT_COUNT] = {
    "product_issue",    "how_to_question",    "feature_request", "account_issue",
    "billing_question", "configuration_help", "general_inquiry", "spam"};

typedef struct theme_info {
    const vocab_theme *t;
    enum ctype_ix type;
    const char *area;      /* display area (from the area mapping) or NULL */
    int request_like;      /* the signature asks for something (reset, change, ...) */
    char *area_label;      /* display area, or the humanised product area */
    char *topic;           /* humanised component, e.g. "content sync" */
    char *desc_first;      /* description's first clause, in the first person */
    const char **intents;  /* usable example intents (placeholders skipped) */
    size_t nintents;
    const char *url_patterns[MAX_URL_PATTERNS]; /* patterns that map back to area */
    size_t nurl;
} theme_info;

struct convgen {
    const vocab *v;
    rng_t rng;
    convgen_options opt;
    theme_info *themes; /* drawable themes, in seeded popularity order */
    size_t nthemes;
    int32_t *deck;      /* >= 0: theme index; < 0: -(noise category + 1) */
    size_t deck_len, deck_pos;
    uint64_t next_id;
};

/* Per-conversation state the template variables read. */
typedef struct gen_ctx {
    convgen *g;
    const theme_info *th; /* NULL for noise */
    const char *kw[3];
    const char *intent;   /* NULL when the theme has no usable intent */
    const char *cname;
    const char *agent;
    const char *email;
    int64_t created_at;
} gen_ctx;

/* ----------------------------------------------------------- randomness --- */

static size_t below(convgen *g, size_t n) { return n ? (size_t)rng_below(&g->rng, n) : 0; }
static int chance(convgen *g, double p) { return rng_double(&g->rng) < p; }
#define PICK(g, arr) ((arr)[below((g), ARRAY_LEN(arr))])

/* --------------------------------------------------------- filler lists --- */

static const char *const CUSTOMER_NAMES[] = {
    "Nicole", "Jessica", "Maria",  "Ashley",   "Sarah",  "Emily",    "Amanda",  "Jennifer",
    "Laura",  "Megan",   "Rachel", "Heather",  "Kim",    "Lisa",     "Anna",    "Sofia",
    "Camille", "Lena",   "Julia",  "Fernanda", "Carlos", "Mike",     "David",   "Tom",
    "Jake",   "Priya",   "Aisha",  "Mei",      "Yuki",   "Olivia",   "Chloe",   "Hannah",
    "Grace",  "Brittany", "Kayla", "Stephanie", "Lucia", "Ines",     "Beatriz", "Noah"};
static const char *const LAST_INITIALS[] = {"b", "k", "m", "r", "s", "t", "w", "h", "l", "d"};
static const char *const EMAIL_DOMAINS[] = {"example.com", "example.org", "example.net",
                                            "mail.example.com", "shop.example.org"};
static const struct { const char *name, *id; } AGENTS[] = {
    {"Sam", "4417"},   {"Alex", "5120"},  {"Jordan", "6233"}, {"Taylor", "7301"},
    {"Morgan", "8145"}, {"Casey", "9022"}, {"Riley", "3318"},  {"Jamie", "2764"}};
static const char *const BOARDS[] = {
    "Recipe Ideas", "Home Decor",     "Summer Outfits", "DIY Projects",  "Travel Tips",
    "Wedding Inspo", "Healthy Meals", "Garden Ideas",   "Kids Crafts",   "Blog Posts",
    "Holiday Baking", "Shop My Etsy", "Fitness",        "Quotes",        "Boho Bedroom"};
static const char *const WHENS[] = {
    "yesterday",  "last week",       "Monday",          "this morning", "the weekend",
    "two days ago", "the last update", "a few days ago", "last night",   "the 1st"};
static const char *const ERRORS[] = {
    "Error 429: Too Many Requests",
    "Error 500: Internal Server Error",
    "Error 401: Unauthorized",
    "Error 403: Forbidden",
    "Error 502: Bad Gateway",
    "Error 400: Invalid request",
    "Request timed out (code 504)",
    "Oops! Something went wrong. Please try again later.",
    "NotFoundError: resource not found",
    "Whoops, something went wrong (ref #4F2A9)"};
static const char *const BROWSERS[] = {"Chrome on a Mac", "Safari on my iPhone", "Chrome on Windows",
                                       "Firefox",         "Edge",                "the Android app",
                                       "an iPad"};
static const char *const AMOUNTS[] = {"$14.99", "$19.99", "$29.99", "$39.99", "$49.99",
                                      "$119.88", "$179.88", "$239.88", "€34.99", "£29.99"};
static const char *const PLANS[] = {"Pro", "Advanced", "Max", "Plus", "Starter", "Business"};
static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const TAGS[] = {"Non-Ecomm", "Ecomm", "Trial", "VIP", "Priority",
                                   "Churn risk", "Creator", "Agency", "Needs follow-up"};
static const char *const URL_SLUGS[] = {"overview", "12345", "recent", "all", "edit"};
static const char *const URL_QUERIES[] = {"", "", "?ref=nav", "?tab=all", "?page=2"};
static const char *const GENERIC_PAGES[] = {"/", "/home", "/app", "/account"};
static const char *const SPAM_NAMES[] = {"Mark", "Kevin", "Ryan", "Steve", "Daniel"};
static const char *const SPAM_DOMAINS[] = {"seo-growth.example.net", "rankboost.example.org",
                                           "linkpartners.example.com", "cryptoyield.example.net"};

/* -------------------------------------------------------------- spintax --- */

static void spin(gen_ctx *c, buf_t *out, const char *tmpl);

static void append_lower_first(buf_t *out, const char *s) {
    size_t start = out->len;
    buf_puts(out, s);
    /* Keep "I", "I'm", acronyms ("CSV", "M4U") and proper nouns followed by caps. */
    char *p = out->data + start;
    if (!p[0] || !isupper((unsigned char)p[0])) return;
    if (p[0] == 'I' && !isalpha((unsigned char)p[1])) return;
    for (const char *q = p + 1; *q && !isspace((unsigned char)*q); q++) /* "CoPilot", "M4U" */
        if (isupper((unsigned char)*q) || isdigit((unsigned char)*q)) return;
    p[0] = (char)tolower((unsigned char)p[0]);
}

static void append_upper_first(buf_t *out, const char *s) {
    size_t start = out->len;
    buf_puts(out, s);
    char *p = out->data + start;
    if (p[0] && islower((unsigned char)p[0])) p[0] = (char)toupper((unsigned char)p[0]);
}

/* s without trailing sentence punctuation and spaces, appended. */
static void append_bare(buf_t *out, const char *s, int lower_first) {
    size_t n = strlen(s);
    while (n && strchr(".!? ", s[n - 1])) n--;
    char *tmp = xstrndup(s, n);
    if (lower_first) append_lower_first(out, tmp);
    else buf_puts(out, tmp);
    free(tmp);
}

/* s as a sentence: capitalised, ending in punctuation. */
static void append_sentence(buf_t *out, const char *s) {
    append_upper_first(out, s);
    size_t n = strlen(s);
    if (n && !strchr(".!?", s[n - 1])) buf_putc(out, '.');
}

static const char *ctx_keyword(const gen_ctx *c, int i) {
    if (c->kw[i]) return c->kw[i];
    if (c->kw[0]) return c->kw[0];
    return "this";
}

static void append_date(gen_ctx *c, buf_t *out) {
    time_t t = (time_t)(c->created_at - (int64_t)below(c->g, 20) * 86400);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        buf_puts(out, "last month");
        return;
    }
    buf_printf(out, "%s %d", MONTHS[tm.tm_mon % 12], tm.tm_mday);
}

/* Appends the value of template variable name. A name the templates do not know
 * is a bug in this file, so it aborts. */
static void var_value(gen_ctx *c, const char *name, buf_t *out) {
    const theme_info *th = c->th;
    convgen *g = c->g;
    if (strcmp(name, "KW") == 0) buf_puts(out, ctx_keyword(c, 0));
    else if (strcmp(name, "KW2") == 0) buf_puts(out, ctx_keyword(c, 1));
    else if (strcmp(name, "KW3") == 0) buf_puts(out, ctx_keyword(c, 2));
    else if (strcmp(name, "KWCAP") == 0) append_upper_first(out, ctx_keyword(c, 0));
    else if (strcmp(name, "INTENT") == 0) {
        if (c->intent) append_sentence(out, c->intent);
        else if (th) append_sentence(out, th->desc_first);
    } else if (strcmp(name, "intent") == 0) {
        if (c->intent) append_bare(out, c->intent, 1);
        else if (th) append_bare(out, th->desc_first, 1);
    } else if (strcmp(name, "DESC") == 0) {
        if (th) append_sentence(out, th->desc_first);
    } else if (strcmp(name, "desc") == 0) {
        if (th) append_bare(out, th->desc_first, 1);
    } else if (strcmp(name, "TOPIC") == 0) {
        buf_puts(out, th ? th->topic : "the dashboard");
    } else if (strcmp(name, "PATH") == 0) {
        if (th) {
            buf_printf(out, "%s > ", th->area_label);
            append_upper_first(out, th->topic);
        } else {
            spin(c, out, "Settings > {Preferences|Profile|Notifications}");
        }
    } else if (strcmp(name, "BOARD") == 0) buf_puts(out, PICK(g, BOARDS));
    else if (strcmp(name, "WHEN") == 0) buf_puts(out, PICK(g, WHENS));
    else if (strcmp(name, "ERROR") == 0) buf_puts(out, PICK(g, ERRORS));
    else if (strcmp(name, "BROWSER") == 0) buf_puts(out, PICK(g, BROWSERS));
    else if (strcmp(name, "NUM") == 0) buf_printf(out, "%zu", 3 + below(g, 60));
    else if (strcmp(name, "ARTICLE") == 0) buf_printf(out, "%zu", 1000000 + below(g, 9000000));
    else if (strcmp(name, "AMOUNT") == 0) buf_puts(out, PICK(g, AMOUNTS));
    else if (strcmp(name, "PLAN") == 0) buf_puts(out, PICK(g, PLANS));
    else if (strcmp(name, "DATE") == 0) append_date(c, out);
    else if (strcmp(name, "CNAME") == 0) buf_puts(out, c->cname ? c->cname : "there");
    else if (strcmp(name, "AGENT") == 0) buf_puts(out, c->agent ? c->agent : "Support");
    else if (strcmp(name, "EMAIL") == 0) buf_puts(out, c->email ? c->email : "me@example.com");
    else {
        fprintf(stderr, "convgen: unknown template variable $%s\n", name);
        abort();
    }
}

/* Expands tmpl[s, e): see the file comment for the syntax. */
static void spin_range(gen_ctx *c, buf_t *out, const char *s, const char *e) {
    while (s < e) {
        if (*s == '{') {
            const char *alts[24];
            size_t nalts = 0;
            int depth = 0;
            const char *p = s + 1;
            alts[nalts++] = p;
            for (; p < e; p++) {
                if (*p == '{') depth++;
                else if (*p == '}' && depth == 0) break;
                else if (*p == '}') depth--;
                else if (*p == '|' && depth == 0 && nalts < ARRAY_LEN(alts)) alts[nalts++] = p + 1;
            }
            if (p >= e) {
                fprintf(stderr, "convgen: unbalanced template: %.*s\n", (int)(e - s), s);
                abort();
            }
            size_t k = below(c->g, nalts);
            const char *ae = k + 1 < nalts ? alts[k + 1] - 1 : p;
            spin_range(c, out, alts[k], ae);
            s = p + 1;
        } else if (*s == '$') {
            const char *p = s + 1;
            char name[24];
            size_t n = 0;
            while (p < e && (isalnum((unsigned char)*p) || *p == '_') && n + 1 < sizeof name)
                name[n++] = *p++;
            name[n] = '\0';
            var_value(c, name, out);
            s = p;
        } else {
            const char *p = s;
            while (p < e && *p != '{' && *p != '$') p++;
            buf_append(out, s, (size_t)(p - s));
            s = p;
        }
    }
}

static void spin(gen_ctx *c, buf_t *out, const char *tmpl) {
    spin_range(c, out, tmpl, tmpl + strlen(tmpl));
}

static void spin_pick(gen_ctx *c, buf_t *out, const char *const *tmpls, size_t n) {
    spin(c, out, tmpls[below(c->g, n)]);
}
#define SPIN_PICK(c, out, arr) spin_pick((c), (out), (arr), ARRAY_LEN(arr))

/* ------------------------------------------------------------ templates --- */
/* Customer openings for theme conversations, by routing type: situation (what
 * happened / what they want), symptom (always carries a theme keyword), detail,
 * ask. Indexed by enum ctype_ix for the five types themes can have. */

static const char *const PRODUCT_SITUATION[] = {
    "$INTENT",
    "$INTENT",
    "{I'm having a problem|I have an issue|Having trouble|Something is wrong}{:| -} $intent.",
    "{Since|Starting} $WHEN{,|} $intent.",
    "{Not sure if this is a bug but|I think there's a bug:|Bug report:} $intent.",
    "{Problem|Issue}: $desc.",
    "{I need help|Help needed}{!|.} $INTENT"};
static const char *const PRODUCT_SYMPTOM[] = {
    "It {keeps saying|says|shows} \"$KW\"{.| every time.}",
    "{Basically|In short|Long story short}, $KW{.|!}",
    "{I'd describe it as|Best way I can describe it:} $KW{, and also $KW2|}.",
    "I searched your help center for \"$KW\" but {nothing came up|the articles didn't help|couldn't find a fix}.",
    "{This is|It's} the {second|third|fourth} time {this week|this month} - $KW{ again|}.",
    "{Still|Again} $KW{ today|, no idea why|}.",
    "The $TOPIC {is broken|isn't working|stopped working}: $KW.",
    "{Same thing|Same problem} as {before|last time}: $KW."};
static const char *const PRODUCT_DETAIL[] = {
    "It's happening with \"$BOARD\"{ mostly| and a couple of others|}.",
    "{About|Around|Roughly|Over} $NUM {posts|items} {are affected|are stuck|didn't go out}.",
    "I'm on $BROWSER{, if that matters|}.",
    "{I already tried|I've tried|Tried} {logging out and back in|clearing my cache|another browser|reconnecting my account|restarting my computer}{ but it didn't help|, no luck|, still the same}.",
    "This started $WHEN{ and it's still happening|}."};
static const char *const PRODUCT_ASK[] = {
    "{Can you|Could you|Can someone} {please |}{look into this|check what's going on|help me fix this}?",
    "Is this a known issue{ on your end|}?",
    "{This is hurting my business|I'm losing traffic because of this|I rely on this every day}{. Please help!|, please fix it asap.|!}",
    "What {should|can} I do?",
    "{Thanks|Thank you|Thx}{!|.| in advance!}"};

static const char *const HOWTO_SITUATION[] = {
    "$INTENT",
    "$INTENT",
    "{Quick question|Question for you|Hey quick one}{:| -} $INTENT",
    "{I'm trying to figure out|I can't work out|I'd like to know} how this works: $intent."};
static const char *const HOWTO_SYMPTOM[] = {
    "{I'm confused about|I can't figure out|I need help with|I have a question about} $KW.",
    "{I looked|I searched} {in Settings|in the help center|everywhere} for \"$KW\" but couldn't find {it|anything}.",
    "How do I {do|handle} the \"$KW\" part?",
    "Is \"$KW\" {something I can do myself|available on my plan}?",
    "Specifically: $KW{ and $KW2|}."};
static const char *const HOWTO_DETAIL[] = {
    "I'm {new to this|pretty new here|still on the trial}{, sorry if this is obvious|}.",
    "{The help article|Your tutorial video} {didn't cover this|was a bit confusing}.",
    "I'm using $BROWSER."};
static const char *const HOWTO_ASK[] = {
    "Could you walk me through it?",
    "Is there a {guide|video|help article} for this?",
    "Where do I find {this|the setting}?",
    "{Thanks|Thank you} in advance!",
    "Step by step instructions would be {great|appreciated}."};

static const char *const FEATURE_SITUATION[] = {
    "$INTENT",
    "{Feature request|Suggestion|Idea for you|Small request}{:| -} $intent.",
    "{Would love to|I'd really like to} see this: $intent."};
static const char *const FEATURE_SYMPTOM[] = {
    "It would be {great|amazing|so helpful} if {you could add|you supported|there was an option for} $KW{.|!}",
    "Please add {support for |}$KW{!|.| - it would save me hours.}",
    "{Any plans|Are there any plans} to {support|add} $KW?",
    "{I'd happily pay more|I would upgrade|My team would use it daily} if {you had|you supported|there was} $KW."};
static const char *const FEATURE_DETAIL[] = {
    "{Right now|Currently} I have to {do it manually|use another tool|switch between apps}{, which takes forever|}.",
    "{A lot of|Many} people in my {Facebook group|community|mastermind} {are asking for|want} this too."};
static const char *const FEATURE_ASK[] = {
    "Is this on your roadmap?",
    "Thanks for considering it!",
    "{Let me know|Please let me know} if {this is planned|you add it}."};

static const char *const BILLING_SITUATION[] = {
    "$INTENT",
    "$INTENT",
    "$DESC",
    "{Question about|Regarding} my {bill|subscription|account}: $intent."};
static const char *const BILLING_SYMPTOM[] = {
    "{It's about|Regarding} $KW: {I checked my bank statement|my invoice shows|I looked at my account} and {$AMOUNT was taken on $DATE|it says $AMOUNT}.",
    "{I need to|I want to} sort out $KW{ today| before my next renewal|}.",
    "This is about $KW{ on my account|, to be clear|}.",
    "{Again|Once more}: $KW."};
static const char *const BILLING_DETAIL[] = {
    "{My account is|I'm} on the $PLAN plan{, billed monthly|, billed yearly|}.",
    "The account email is $EMAIL."};
static const char *const BILLING_ASK[] = {
    "{Please|Can you} {help|sort this out|confirm}{ asap| today|}.",
    "{Thanks|Thank you}{!|.}",
    "Please reply by email."};

static const char *const ACCOUNT_SITUATION[] = {
    "$INTENT",
    "$INTENT",
    "$DESC",
    "{Help|Urgent}{!|:} $intent."};
/* Account requests (deleting, changing, resetting) rather than failures. */
static const char *const ACCOUNT_REQUEST_SYMPTOM[] = {
    "{I need to|I'd like to|I want to} sort out $KW{ today|, please|}.",
    "This is about $KW{ on my account|}.",
    "{I looked for|I couldn't find} \"$KW\" in {Settings|my account page}{.| anywhere.}"};
static const char *const ACCOUNT_SYMPTOM[] = {
    "{It says|I get|All I see is} \"$KW\"{.| every time.}",
    "{I've tried|Tried} {three times|several times|on two browsers} - {still |}$KW.",
    "{Again|Still}: $KW."};
static const char *const ACCOUNT_DETAIL[] = {
    "{My email is|The account email is} $EMAIL{, if you need it|}.",
    "I'm on $BROWSER."};
static const char *const ACCOUNT_ASK[] = {
    "I need to get back in {today|asap}{ - I have posts scheduled|}.",
    "Please help me {access my account|sort this out}.",
    "{Thanks|Thank you}!"};

typedef struct opening_set {
    const char *const *situation, *const *symptom, *const *detail, *const *ask;
    size_t nsituation, nsymptom, ndetail, nask;
} opening_set;
#define OPENING(S, Y, D, A) {S, Y, D, A, ARRAY_LEN(S), ARRAY_LEN(Y), ARRAY_LEN(D), ARRAY_LEN(A)}

static const opening_set OPENINGS[] = {
    [CT_PRODUCT] = OPENING(PRODUCT_SITUATION, PRODUCT_SYMPTOM, PRODUCT_DETAIL, PRODUCT_ASK),
    [CT_HOWTO] = OPENING(HOWTO_SITUATION, HOWTO_SYMPTOM, HOWTO_DETAIL, HOWTO_ASK),
    [CT_FEATURE] = OPENING(FEATURE_SITUATION, FEATURE_SYMPTOM, FEATURE_DETAIL, FEATURE_ASK),
    [CT_ACCOUNT] = OPENING(ACCOUNT_SITUATION, ACCOUNT_SYMPTOM, ACCOUNT_DETAIL, ACCOUNT_ASK),
    [CT_BILLING] = OPENING(BILLING_SITUATION, BILLING_SYMPTOM, BILLING_DETAIL, BILLING_ASK),
};
static const opening_set ACCOUNT_REQUEST_OPENING =
    OPENING(ACCOUNT_SITUATION, ACCOUNT_REQUEST_SYMPTOM, ACCOUNT_DETAIL, ACCOUNT_ASK);

static const char *const GREETINGS[] = {
    "{Hi|Hello|Hey|Hi there|Hello team|Hey guys|Good morning|Hi support|Hiya}{,|!|}"};
static const char *const FOREIGN_GREETINGS[] = {"{Hola|Bonjour|Hallo|Olá|Ciao}{!|,}"};
static const char *const FOREIGN_THANKS[] = {"{Gracias|Merci beaucoup|Danke|Obrigada|Grazie}{!|.}"};
static const char *const EMAIL_SIGNOFFS[] = {
    "{Thanks|Thank you|Best|Kind regards|Cheers},\n$CNAME",
    "{Thanks|Thank you},\n$CNAME\n\nSent from my iPhone",
    "$CNAME"};
static const char *const SUBJECTS[] = {
    "$KWCAP", "Re: $KWCAP", "Problem with $TOPIC", "Question about $TOPIC", "Help!",
    "Urgent: $KW", "Help please", "Issue"};

/* A customer follow-up after a support reply, and how support answers it. */
typedef struct exchange {
    const char *customer, *support;
} exchange;
/* After a reply to a reported problem. */
static const exchange FOLLOWUP_AFTER_REPLY[] = {
    {"{I tried that|I did what you said|Done} {but|and} it's still {happening|not working|the same}{.|!|...}",
     "Thanks for checking. I've escalated this to our engineers and will update you here."},
    {"{Thanks|Thank you}{, that worked|! That fixed it|, all sorted now}{!|.}",
     "{Great|Glad to hear it}! Let me know if anything else comes up."},
    {"{Also|Oh and|One more thing}, $KW {too|as well|again today}.",
     "Thanks, I've added that to the ticket."},
    {"{Here's|Attached is} a screenshot{.| of what I see.}",
     "Thanks for the screenshot! I've passed it to the team."},
    {"{Ok|Okay|Great}, {thanks|thank you}. {Let me know|Keep me posted} when it's fixed.",
     "Will do! I'll update you as soon as I hear back."}};
/* After an answer to a question or request (how-to, feature, billing, account
 * requests). */
static const exchange FOLLOWUP_AFTER_ANSWER[] = {
    {"{Thanks|Thank you}{, that's what I needed|! That worked|, perfect}{!|.}",
     "You're welcome! Have a great day."},
    {"{One more thing|Also}: {what about|and how about} $KW?",
     "Good question - the same steps apply there too."},
    {"{I can't find that option|I don't see that} {in my account|on my screen}{.|, is it on my plan?}",
     "It can depend on your plan - could you send me a screenshot of what you see?"},
    {"{Ok|Okay|Great}, {thanks|thank you}{!|.}", "You're welcome!"}};
/* After a feature request was passed on. */
static const exchange FOLLOWUP_AFTER_FEATURE[] = {
    {"{Thanks|Thank you}! {Fingers crossed|Hope it happens soon}.", "You're welcome!"},
    {"Any idea {when|if} it will be available?",
     "I can't share a timeline yet, but I'll let you know when there's news."},
    {"{Also|And} $KW would be {great|amazing} too.", "Noted - I've added that to the request."}};
static const exchange NOISE_FOLLOWUPS[] = {
    {"{Any update|Any news} {on this|here}?", "Still looking into it - I'll get back to you shortly."},
    {"{Thanks|Thank you}{!|.}", "You're welcome!"},
    {"{Ok|Okay}, {thanks|got it}.", "{Great|Perfect}, have a nice day!"},
    {"{Hello?|Is anyone there?}", "Yes, I'm here! Give me a moment to check."}};
#define PICK_EXCHANGE(g, arr) (&(arr)[below((g), ARRAY_LEN(arr))])
/* Still waiting for a first reply. */
static const char *const FOLLOWUP_WAITING[] = {
    "{Any update|Any news|Hello?} {on this|here}?",
    "{Hello?|Is anyone there?} {Still waiting|Still need help with this}{.|!}",
    "{Also|Forgot to mention}, $KW{ too| as well|}."};
static const char *const NOISE_WAITING[] = {
    "{Any update|Any news} {on this|here}?", "{Hello?|Is anyone there?}"};

static const char *const BOT_REPLIES[] = {
    "{Thanks for reaching out! |Hi there 👋 }{Our team typically replies in {a few hours|under a day}.|We'll be right with you.|Someone from our team will get back to you soon.}"};
static const char *const SUPPORT_HELLO[] = {
    "{Hi|Hey|Hello} $CNAME{!|,} {Thanks for reaching out|Thanks for getting in touch|Thank you for your patience}{.|!}"};
/* For reported problems, sympathy first. */
static const char *const SUPPORT_HELLO_PROBLEM[] = {
    "{Hi|Hey|Hello} $CNAME{!|,} {Thanks for reaching out|Sorry to hear about this|Sorry for the trouble|Thank you for your patience}{.|!}"};
static const char *const SUPPORT_CLOSING[] = {
    "{Let me know if you have any other questions|Hope this helps|Have a great day}{!|.}",
    "{Let me know if you have any other questions|Hope this helps|Have a great day}{!|.}\n\n$AGENT"};
static const char *const REPLY_PRODUCT[] = {
    "I'm sorry about the trouble with the $TOPIC. {This is a known issue|We're aware of this issue} and our engineering team is working on a fix{.| right now.}",
    "{Could you|Can you} send me {a screenshot|the exact error message|the name of the affected board}{ so I can investigate| so I can pass it to our engineers|}?",
    "I've {reproduced this|looked into your account} and escalated it to our engineering team. I'll update you as soon as I hear back.",
    "{Could you try|Please try} {logging out and back in|clearing your browser cache|reconnecting your account} and let me know if it helps?",
    "Thanks for flagging that $KW. {Our engineers are on it|I've added your account to the bug report}."};
static const char *const REPLY_HOWTO[] = {
    "Here's how: go to $PATH and {click|select} {Edit|Settings|the three dots menu}{.| - it's at the top right.}",
    "{Great question!|Sure!} You can do that from $PATH{.|; here's our help article: https://help.example.com/articles/$ARTICLE}",
    "{Good news|Yes}, that's possible! Open $PATH, then follow the steps in this guide: https://help.example.com/articles/$ARTICLE"};
static const char *const REPLY_FEATURE[] = {
    "{Thanks for the suggestion|Great idea|Thanks for the feedback}! I've passed this to our product team{.| so they can consider it for the roadmap.}",
    "{That's not possible right now|We don't support that yet}, but I've {shared|logged} your request with our product team."};
/* Billing replies fit what the customer asked about (see billing_replies). */
static const char *const REPLY_BILLING_REFUND[] = {
    "I've {processed your refund|issued a refund}{; it should appear in 5-10 business days|}.",
    "I've passed your refund request to our billing team; you'll hear back within 2 business days."};
static const char *const REPLY_BILLING_CANCEL[] = {
    "I've cancelled your subscription{ effective today| - you'll keep access until the end of your billing period}.",
    "You can cancel under Settings > Billing{ - click Cancel plan at the bottom|}. {Let me know if you run into any trouble.|}"};
static const char *const REPLY_BILLING_PLAN[] = {
    "I've updated your plan{ effective today| - the change shows on your next invoice}.",
    "You can switch plans under Settings > Billing{; the price difference is prorated|}."};
static const char *const REPLY_BILLING[] = {
    "I can see {the charge|your invoice} on our side; {let me check with our billing team|I've sent a copy to your email}.",
    "Let me look into this for you - I'll {get back to you by email|follow up} {shortly|today}.",
    "{Sure|Of course}! I've sent {the details|that} to your email address."};
static const char *const REPLY_ACCOUNT[] = {
    "I've sent a {password reset link|verification email} to your email address{.|; it may take a few minutes.}",
    "{Please try|Could you try} {clearing your cookies|an incognito window} and logging in again?",
    "I've {unlocked your account|updated your account}{; you should be able to log in now|}."};
static const char *const REPLY_ACCOUNT_REQUEST[] = {
    "Done! I've processed your request{ - you'll get a confirmation email shortly|}.",
    "Before I do that, could you confirm {you've downloaded your drafts|the email address on the account}?",
    "I can help with that. For security, please reply from the email address on the account."};
static const char *const REPLY_CONFIG[] = {
    "You can change that under $PATH{.| - just remember to save.}",
    "{Sure!|No problem!} Head to $PATH and you'll find it there."};
static const char *const REPLY_GENERAL[] = {
    "{Could you tell me a bit more about what you're seeing|Can you share a few more details}?",
    "I'm happy to help{!|.} {Could you tell me which feature you're asking about|What exactly isn't working}?",
    "{We don't|Unfortunately we don't} offer that at the moment, but I'll pass it along."};
static const char *const REPLY_SPAM[] = {"{No thank you|We're not interested}{.|, thanks.}"};

typedef struct tmpl_list { const char *const *v; size_t n; } tmpl_list;
#define TLIST(a) {a, ARRAY_LEN(a)}
static tmpl_list billing_replies(const char *opening) {
    static const char *const refund[] = {"refund", "money back", "reembolso", "rembourse", NULL};
    static const char *const cancel[] = {"cancel", NULL};
    static const char *const plan[] = {"plan", "upgrade", "downgrade", NULL};
    const char *const *const sets[] = {refund, cancel, plan};
    const tmpl_list lists[] = {TLIST(REPLY_BILLING_REFUND), TLIST(REPLY_BILLING_CANCEL),
                               TLIST(REPLY_BILLING_PLAN)};
    for (size_t s = 0; s < ARRAY_LEN(sets); s++)
        for (size_t i = 0; sets[s][i]; i++)
            if (strcasestr(opening, sets[s][i])) return lists[s];
    return (tmpl_list)TLIST(REPLY_BILLING);
}

static const tmpl_list REPLIES[CT_COUNT] = {
    [CT_PRODUCT] = TLIST(REPLY_PRODUCT), [CT_HOWTO] = TLIST(REPLY_HOWTO),
    [CT_FEATURE] = TLIST(REPLY_FEATURE), [CT_ACCOUNT] = TLIST(REPLY_ACCOUNT),
    [CT_BILLING] = TLIST(REPLY_BILLING), [CT_CONFIG] = TLIST(REPLY_CONFIG),
    [CT_GENERAL] = TLIST(REPLY_GENERAL), [CT_SPAM] = TLIST(REPLY_SPAM)};

static const char *const NOTES_PRODUCT[] = {
    "{Internal|Note}: {checked the logs|looked at the account} - {looks like|seems to be} $KW. {Escalating to eng.|Linked to the existing ticket.|Tagging for the product team.}"};
static const char *const NOTES_OTHER[] = {
    "{Internal|Note}: customer is on the $PLAN plan{, annual|, monthly|}.",
    "{Internal|Note}: {handled|resolved} per the usual macro."};

/* ---------------------------------------------------------------- noise --- */

typedef struct noise_tmpl {
    enum ctype_ix type;
    const char *text;
} noise_tmpl;

static const noise_tmpl NOISE_BILLING[] = {
    {CT_BILLING, "{Hi|Hello}, I was charged $AMOUNT on $DATE but I {don't recognize this charge|thought I had cancelled}. Can you explain?"},
    {CT_BILLING, "Can I get {an invoice|a receipt} for my last payment? I need it for my {accountant|taxes}{.|, thanks}"},
    {CT_BILLING, "Please cancel my subscription {effective immediately|at the end of this billing period}. {Thanks|Thank you}."},
    {CT_BILLING, "I'd like a refund for the {annual|monthly} plan, I {forgot to cancel|didn't use it at all this month}."},
    {CT_BILLING, "How do I update my credit card {details|on file}? My old card expired."},
    {CT_BILLING, "Do you offer a {nonprofit|student|annual} discount?"},
    {CT_BILLING, "Why did my price go up? I was paying $AMOUNT before."},
    {CT_BILLING, "Can you send the invoice to {our finance team|my business email} with our VAT number on it?"},
    {CT_BILLING, "I want to pause my account for {a couple of months|the summer} instead of cancelling. Is that possible?"}};
static const noise_tmpl NOISE_ACCOUNT[] = {
    {CT_ACCOUNT, "{I got|I received} an email saying someone logged into my account from {a new device|another country}. Was that you?"},
    {CT_ACCOUNT, "Please merge my two accounts, I {accidentally|mistakenly} signed up twice with {different emails|my work email}."},
    {CT_ACCOUNT, "The two-factor code {never arrives|isn't working}{. Please help|, I'm stuck}."},
    {CT_ACCOUNT, "I can't {log in|sign in}, it keeps saying {invalid credentials|something went wrong}."},
    {CT_ACCOUNT, "My {assistant|VA} left the company, how do I remove her access to our account?"}};
static const noise_tmpl NOISE_SPAM[] = {
    {CT_SPAM, "Hello, I noticed your website {isn't ranking|is not on the first page} on Google for {several|important} keywords. We {offer|provide} affordable SEO {services|packages} starting at $AMOUNT/month. {Reply|Let me know} if interested."},
    {CT_SPAM, "Hi, I'm reaching out about a guest post {opportunity|collaboration}. We {have|manage} high-authority sites {and can|that can} provide {do-follow backlinks|quality backlinks} to your blog. Price is $AMOUNT per link."},
    {CT_SPAM, "{Earn|Make} {300%|5x} {returns|profit} in {30 days|one week} with our {AI crypto trading bot|bitcoin mining pool}! {Limited spots|Join now}: https://cryptoyield.example.net/join"},
    {CT_SPAM, "Dear Sir/Madam, we are a leading web development company. We can {redesign your website|build your mobile app} at a very low cost. Please share your requirements."},
    {CT_SPAM, "Your domain listing is expiring soon. Renew now to avoid losing it: http://renew-domains.example.org/renew"},
    {CT_SPAM, "Congratulations! You have been selected to receive a $AMOUNT gift card. Claim it here: http://gift-claim.example.com"},
    {CT_SPAM, "Hi! Want 10,000 real followers in 7 days? {Guaranteed results|100% safe}, packages from $AMOUNT. Reply YES."}};
static const noise_tmpl NOISE_VAGUE[] = {
    {CT_GENERAL, "it doesn't work"},
    {CT_GENERAL, "help pls"},
    {CT_GENERAL, "not working{!!|}"},
    {CT_GENERAL, "??"},
    {CT_GENERAL, "Help!!"},
    {CT_GENERAL, "{Hi|Hello}, {it's|it is} not working {again|anymore} and I don't know {why|what to do}."},
    {CT_GENERAL, "Something is broken {again|today}, please {fix it|help}."},
    {CT_GENERAL, "I have a problem with my account, can someone {call|email} me?"},
    {CT_GENERAL, "Your {app|tool|site} is so confusing, nothing works like {it should|it used to}."},
    {CT_GENERAL, "{Hey|Hi} so the thing I asked about last time is happening again"}};
/* The first NOISE_VAGUE_SHORT entries are too short for the quality filter. */
#define NOISE_VAGUE_SHORT 5
static const noise_tmpl NOISE_GREETING[] = {
    {CT_GENERAL, "Hi"},
    {CT_GENERAL, "Hello"},
    {CT_GENERAL, "{Hi|Hello}{!|.}"},
    {CT_GENERAL, "hi"},
    {CT_GENERAL, "I have a product question or feedback"},
    {CT_GENERAL, "I have a product question or feedback."},
    {CT_BILLING, "I have a billing question"},
    {CT_GENERAL, "Hi there, I have a quick question{ about my account|}"},
    {CT_GENERAL, "Hello, is anyone available to chat right now?"},
    {CT_GENERAL, "Good morning! Can I ask you something?"}};
/* The first NOISE_GREETING_TEMPLATES entries are templates the filter drops. */
#define NOISE_GREETING_TEMPLATES 7
static const noise_tmpl NOISE_GENERAL[] = {
    {CT_GENERAL, "Do you have {an affiliate program|a referral program|a partner program}?"},
    {CT_GENERAL, "Are you hiring? I'd love to {work for|intern at} your company."},
    {CT_GENERAL, "Is there a {phone number|way to schedule a call} to talk to someone?"},
    {CT_GENERAL, "What are your support hours{ on weekends|}?"},
    {CT_GENERAL, "Do you have a mobile app for {Android|iPhone}?"},
    {CT_GENERAL, "Can I get a copy of your {privacy policy|DPA|security questionnaire}?"},
    {CT_GENERAL, "I'm writing an article about {small business tools|marketing software}, could I interview someone from your team?"}};
static const noise_tmpl NOISE_CONFIG[] = {
    {CT_CONFIG, "How do I change my {time zone|timezone}? Everything shows {an hour off|in the wrong time zone}."},
    {CT_CONFIG, "Where can I turn off {email notifications|the weekly summary emails}?"},
    {CT_CONFIG, "How do I change the date format to {day/month/year|24 hour time}?"},
    {CT_CONFIG, "Can I set a default {posting schedule|time slot} for new drafts?"},
    {CT_CONFIG, "How do I change the {profile picture|company name} shown on my account?"}};
static const noise_tmpl NOISE_FOREIGN[] = {
    {CT_ACCOUNT, "Hola, no puedo acceder a mi cuenta desde {ayer|el lunes}. ¿Me pueden ayudar?"},
    {CT_BILLING, "Buenas tardes, quiero cancelar mi suscripción y pedir un reembolso."},
    {CT_GENERAL, "Hola, ¿tienen soporte en español? Gracias."},
    {CT_ACCOUNT, "Bonjour, je n'arrive pas à me connecter à mon compte. Pouvez-vous m'aider ?"},
    {CT_BILLING, "Bonjour, j'ai été débité deux fois ce mois-ci, merci de me rembourser."},
    {CT_GENERAL, "Bonjour, est-ce que vous proposez une version en français ?"},
    {CT_BILLING, "Hallo, ich möchte mein Abonnement kündigen. Wie geht das?"},
    {CT_ACCOUNT, "Guten Tag, ich kann mich nicht mehr einloggen. Bitte um Hilfe."},
    {CT_BILLING, "Hallo, können Sie mir eine Rechnung mit Umsatzsteuer-ID schicken?"},
    {CT_ACCOUNT, "Olá, não consigo entrar na minha conta. Podem me ajudar?"},
    {CT_BILLING, "Oi, gostaria de cancelar minha assinatura e receber o reembolso."},
    {CT_GENERAL, "Bom dia, vocês têm suporte em português?"},
    {CT_ACCOUNT, "Hola! sorry my English is not good. Necesito ayuda con mi cuenta please"}};
static const noise_tmpl NOISE_OUTBOUND[] = {
    {CT_GENERAL, "Hi $CNAME, just checking in to see how you're getting on with your {trial|new plan}. Let me know if you have any questions!"},
    {CT_GENERAL, "Hey there 👋 Want a quick tour of what's new? Reply YES and we'll send you a short guide."},
    {CT_GENERAL, "Hi $CNAME! Your trial ends in {3 days|2 days|24 hours}. Upgrade now to keep your scheduled posts."},
    {CT_GENERAL, "How likely are you to recommend us to a friend? Reply with a number from 0 to 10."}};
static const char *const OUTBOUND_REPLIES[] = {
    "{Thanks|Thank you}!", "No thanks", "{Not right now|Maybe later}, thanks.", "{9|10|7}",
    "Yes please"};
static const char *const SPAM_SUBJECTS[] = {
    "Partnership opportunity", "Quick question about your website", "Guest post",
    "Grow your traffic", "RE: Your listing", "Congratulations!"};
static const char *const NOISE_SUBJECTS[] = {"Question", "Help", "Account", "Invoice",
                                             "Re: Your subscription", "Hello"};

enum noise_cat {
    NC_BILLING = 0, NC_ACCOUNT, NC_SPAM, NC_VAGUE, NC_GREETING, NC_GENERAL, NC_CONFIG,
    NC_FOREIGN, NC_OUTBOUND, NC_COUNT
};

typedef struct noise_category {
    const noise_tmpl *t;
    size_t n;
    double weight;    /* share of the noise */
    double p_support; /* chance that support replies */
} noise_category;
#define NCAT(arr, w, ps) {arr, ARRAY_LEN(arr), w, ps}

static const noise_category NOISE_CATS[NC_COUNT] = {
    [NC_BILLING] = NCAT(NOISE_BILLING, 0.22, 0.8),   [NC_ACCOUNT] = NCAT(NOISE_ACCOUNT, 0.12, 0.8),
    [NC_SPAM] = NCAT(NOISE_SPAM, 0.13, 0.1),         [NC_VAGUE] = NCAT(NOISE_VAGUE, 0.12, 0.6),
    [NC_GREETING] = NCAT(NOISE_GREETING, 0.10, 0.5), [NC_GENERAL] = NCAT(NOISE_GENERAL, 0.09, 0.7),
    [NC_CONFIG] = NCAT(NOISE_CONFIG, 0.06, 0.8),     [NC_FOREIGN] = NCAT(NOISE_FOREIGN, 0.10, 0.6),
    [NC_OUTBOUND] = NCAT(NOISE_OUTBOUND, 0.06, 0.0)};

/* ------------------------------------------------------ theme analysis --- */

static int has_word(const char *hay, const char *word) {
    /* Case-insensitive substring on word boundaries (underscores count as
     * boundaries, so signature parts match). */
    size_t n = strlen(word);
    for (const char *p = hay; (p = strcasestr(p, word)) != NULL; p++) {
        int left = p == hay || !isalnum((unsigned char)p[-1]);
        int right = !isalnum((unsigned char)p[n]);
        if (left && right) return 1;
    }
    return 0;
}

static int has_any(const char *hay, const char *const *words) {
    for (size_t i = 0; words[i]; i++)
        if (has_word(hay, words[i])) return 1;
    return 0;
}

/* The routing-type rule (documented in convgen.h), applied in this order:
 *  1. billing product area: money matters (cancel, refund, plan, charge, payment,
 *     invoice, subscription) -> billing_question; other questions there (e.g.
 *     "managing multiple accounts") -> how_to_question; else billing_question.
 *  2. account access and identity (login, password, locked, suspended, sign up,
 *     session, deleting the account, changing the account email) -> account_issue.
 *  3. asking for a capability that does not exist yet: the description says the
 *     product doesn't support it, or the signature is a request/access for a
 *     "feature" -> feature_request.
 *  4. requests, questions, guidance, inquiries, configuration, pricing, "needs
 *     help", "asking about" -> how_to_question.
 *  5. everything else (failures, bugs, errors, mismatches) -> product_issue. */
static enum ctype_ix theme_type_ix(const vocab_theme *t) {
    static const char *const money[] = {"cancel", "cancellation", "refund", "plan", "charge",
                                        "charged", "payment", "invoice", "subscription", NULL};
    static const char *const asking[] = {"question", "questions", "guidance", "request",
                                         "inquiry", "how", NULL};
    static const char *const access[] = {"login", "log in", "password", "locked", "suspended",
                                         "sign up", "signup", "session", "delete account",
                                         "deletion", "email address", NULL};
    static const char *const missing[] = {"doesn't support", "does not support",
                                          "not supported", "new feature", NULL};
    static const char *const howto[] = {"request", "question", "questions", "guidance", "how",
                                        "inquiry", "configuration", "pricing", "needs help",
                                        "asking about", NULL};
    char sig[256];
    snprintf(sig, sizeof sig, "%s", t->signature);
    for (char *p = sig; *p; p++)
        if (*p == '_' || *p == '-') *p = ' ';
    const char *desc = t->description ? t->description : "";
    /* The part after " - " lists symptoms ("configuration errors"), not intent. */
    const char *dash = strstr(desc, " - ");
    char *clause = dash ? xstrndup(desc, (size_t)(dash - desc)) : xstrdup(desc);
    enum ctype_ix type = CT_PRODUCT;

    if (strcasestr(t->product_area, "billing"))
        type = has_any(sig, money) || !has_any(sig, asking) ? CT_BILLING : CT_HOWTO;
    else if (has_any(sig, access) || has_any(desc, access))
        type = CT_ACCOUNT;
    else if (has_any(desc, missing) ||
             ((has_word(sig, "request") || has_word(sig, "access")) &&
              (has_word(desc, "feature") || has_word(desc, "features"))))
        type = CT_FEATURE;
    else if (has_any(sig, howto) || has_any(clause, howto))
        type = CT_HOWTO;
    free(clause);
    return type;
}

const char *convgen_theme_type(const vocab_theme *t) { return CTYPE_NAMES[theme_type_ix(t)]; }

/* An example intent like "[Google verification code]" describes a category rather
 * than quoting a customer; themes with only such intents (meta themes such as a
 * review queue or "not about us") are not drawn: the noise covers them. */
static int intent_usable(const char *s) { return s && s[0] && s[0] != '['; }

static int theme_drawable(const vocab_theme *t) {
    if (!t->active) return 0;
    if (t->nintents == 0) return 1;
    for (size_t i = 0; i < t->nintents; i++)
        if (intent_usable(t->intents[i])) return 1;
    return 0;
}

static char *humanise(const char *s) {
    char *h = xstrdup(s);
    for (char *p = h; *p; p++)
        if (*p == '_') *p = ' ';
    return h;
}

/* Replaces every whole-word occurrence of from with to. */
static char *replace_word(char *s, const char *from, const char *to) {
    buf_t b = BUF_INIT;
    size_t n = strlen(from);
    const char *p = s;
    while (*p) {
        if (strncmp(p, from, n) == 0 && (p == s || !isalnum((unsigned char)p[-1])) &&
            !isalnum((unsigned char)p[n])) {
            buf_puts(&b, to);
            p += n;
        } else {
            buf_putc(&b, *p++);
        }
    }
    free(s);
    return buf_detach(&b);
}

/* The description's first clause (before " - "), turned into the first person
 * ("User wants to cancel" -> "I want to cancel", "User's payment failed" -> "my
 * payment failed") so a customer can say it. */
static char *first_person(const char *desc) {
    const char *dash = strstr(desc, " - ");
    char *clause = dash ? xstrndup(desc, (size_t)(dash - desc)) : xstrdup(desc);
    char *out;
    if (strncmp(clause, "User's ", 7) == 0) {
        out = xasprintf("my %s", clause + 7);
    } else if (strncmp(clause, "User ", 5) == 0) {
        const char *w = clause + 5;
        size_t wl = strcspn(w, " ");
        const char *rest = w + wl;
        char *word = xstrndup(w, wl);
        static const char *const states[] = {"stuck", "unable", "locked", "not", NULL};
        if (strcmp(word, "cannot") == 0 || strcmp(word, "can't") == 0)
            out = xasprintf("I %s%s", word, rest);
        else if (wl > 3 && strcmp(word + wl - 3, "ing") == 0)
            out = xasprintf("I'm %s%s", word, rest);
        else if (has_any(word, states))
            out = xasprintf("I'm %s%s", word, rest);
        else if (wl > 2 && strcmp(word + wl - 2, "ed") == 0)
            out = xasprintf("I was %s%s", word, rest);
        else if (wl > 2 && word[wl - 1] == 's' && word[wl - 2] != 's')
            out = xasprintf("I %.*s%s", (int)(wl - 1), word, rest);
        else
            out = xasprintf("my %s%s", word, rest);
        free(word);
    } else if (strncmp(clause, "Questions about ", 16) == 0) {
        out = xasprintf("I have a question about %s", clause + 16);
    } else {
        out = xstrdup(clause);
    }
    free(clause);
    out = replace_word(out, "their", "my");
    out = replace_word(out, "they", "I");
    out = replace_word(out, "user's", "my");
    if (!out[0]) {
        free(out);
        out = xstrdup("I have a problem");
    }
    return out;
}

static const char *display_area_of(const vocab *v, const char *signature) {
    for (size_t i = 0; i < v->nareas; i++)
        for (size_t j = 0; j < v->areas[i].nsignatures; j++)
            if (strcmp(v->areas[i].signatures[j], signature) == 0) return v->areas[i].display;
    return NULL;
}

/* URL patterns whose rule maps back to the theme's display area (first rule
 * wins in vocab_url_area, so a pattern shadowed by an earlier rule of another
 * area is skipped). */
static void collect_url_patterns(const vocab *v, theme_info *ti) {
    if (!ti->area) return;
    for (size_t i = 0; i < v->nurl_rules && ti->nurl < MAX_URL_PATTERNS; i++) {
        if (strcmp(v->url_rules[i].area, ti->area) != 0) continue;
        char *url = xasprintf("%s%s", URL_BASE, v->url_rules[i].pattern);
        const char *got = vocab_url_area(v, url);
        if (got && strcmp(got, ti->area) == 0) ti->url_patterns[ti->nurl++] = v->url_rules[i].pattern;
        free(url);
    }
}

/* Whether the signature names a request (reset, change, deletion, ...) rather
 * than a failure: such account themes get request wording, not "still broken". */
static int signature_asks(const vocab_theme *t) {
    static const char *const asks[] = {"request", "change", "reset", "switching", "deletion",
                                       "question", "inquiry", NULL};
    char *sig = humanise(t->signature);
    int yes = has_any(sig, asks);
    free(sig);
    return yes;
}

static void theme_info_init(const vocab *v, const vocab_theme *t, theme_info *ti) {
    memset(ti, 0, sizeof *ti);
    ti->t = t;
    ti->type = theme_type_ix(t);
    ti->request_like = signature_asks(t);
    ti->area = display_area_of(v, t->signature);
    ti->area_label = ti->area ? xstrdup(ti->area) : humanise(t->product_area);
    if (ti->area_label[0]) ti->area_label[0] = (char)toupper((unsigned char)ti->area_label[0]);
    ti->topic = humanise(strcmp(t->component, "unknown") == 0 ? t->product_area : t->component);
    for (char *p = ti->topic; *p; p++) *p = (char)tolower((unsigned char)*p);
    ti->desc_first = first_person(t->description[0] ? t->description : t->signature);
    if (!t->description[0]) {
        char *h = humanise(ti->desc_first);
        free(ti->desc_first);
        ti->desc_first = h;
    }
    ti->intents = xcalloc(t->nintents ? t->nintents : 1, sizeof *ti->intents);
    for (size_t i = 0; i < t->nintents; i++)
        if (intent_usable(t->intents[i])) ti->intents[ti->nintents++] = t->intents[i];
    collect_url_patterns(v, ti);
}

static void theme_info_free(theme_info *ti) {
    free(ti->area_label);
    free(ti->topic);
    free(ti->desc_first);
    free(ti->intents);
}

/* ----------------------------------------------------------------- deck --- */

/* Splits total into integer counts proportional to w (largest remainder). */
static void apportion(const double *w, size_t n, size_t total, size_t *out) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += w[i];
    if (n == 0) return;
    size_t given = 0;
    double *rem = xcalloc(n, sizeof *rem);
    for (size_t i = 0; i < n; i++) {
        double exact = sum > 0 ? (double)total * w[i] / sum : 0;
        out[i] = (size_t)floor(exact);
        rem[i] = exact - (double)out[i];
        given += out[i];
    }
    while (given < total) { /* ties go to the earlier (more popular) entry */
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (rem[i] > rem[best]) best = i;
        out[best]++;
        rem[best] = -1;
        given++;
    }
    free(rem);
}

/* Popularity weight of the theme at rank r (0-based) among n drawable themes: a
 * Zipf-like head of ~20% of the themes carries HEAD_SHARE of the conversations;
 * the rest is a flatter long tail. */
static size_t head_size(size_t n) {
    size_t head = (size_t)llround((double)n * HEAD_FRACTION);
    if (head < 1) head = 1;
    return MIN(head, n);
}

static void theme_weights(size_t n, double *w) {
    size_t head = head_size(n);
    double hs = 0, ts = 0;
    for (size_t r = 0; r < n; r++) {
        w[r] = r < head ? pow((double)(r + 1), -HEAD_EXPONENT)
                        : pow((double)(r - head + 1), -TAIL_EXPONENT);
        if (r < head) hs += w[r];
        else ts += w[r];
    }
    double head_share = head == n ? 1.0 : HEAD_SHARE;
    for (size_t r = 0; r < n; r++)
        w[r] = r < head ? head_share * w[r] / hs : (1.0 - head_share) * w[r] / ts;
}

static void deck_build(convgen *g) {
    size_t n = g->deck_len, pos = 0;
    size_t n_noise = g->nthemes == 0 ? n : (size_t)llround((double)n * g->opt.noise_share);
    if (n_noise > n) n_noise = n;
    size_t n_theme = n - n_noise;
    if (g->nthemes) {
        double *w = xcalloc(g->nthemes, sizeof *w);
        size_t *counts = xcalloc(g->nthemes, sizeof *counts);
        theme_weights(g->nthemes, w);
        apportion(w, g->nthemes, n_theme, counts);
        for (size_t i = 0; i < g->nthemes; i++)
            for (size_t k = 0; k < counts[i]; k++) g->deck[pos++] = (int32_t)i;
        free(w);
        free(counts);
    }
    double nw[NC_COUNT];
    size_t ncounts[NC_COUNT];
    for (size_t i = 0; i < NC_COUNT; i++) nw[i] = NOISE_CATS[i].weight;
    apportion(nw, NC_COUNT, n_noise, ncounts);
    for (size_t i = 0; i < NC_COUNT; i++)
        for (size_t k = 0; k < ncounts[i]; k++) g->deck[pos++] = -(int32_t)i - 1;
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
        size_t j = below(g, i);
        int32_t tmp = g->deck[i - 1];
        g->deck[i - 1] = g->deck[j];
        g->deck[j] = tmp;
    }
    g->deck_pos = 0;
}

static size_t head_count_of_type(const convgen *g, size_t head, enum ctype_ix type) {
    size_t k = 0;
    for (size_t i = 0; i < head; i++) k += g->themes[i].type == type;
    return k;
}

/* Puts at least one theme of every routing type the vocabulary has into the
 * popular head (swapping out a theme whose type is there more than once), so
 * even a small sample exercises every path, e.g. feature requests. */
static void diversify_head(convgen *g) {
    size_t head = head_size(g->nthemes);
    for (int type = 0; type < CT_COUNT; type++) {
        if (head_count_of_type(g, head, (enum ctype_ix)type)) continue;
        size_t from = head;
        while (from < g->nthemes && g->themes[from].type != (enum ctype_ix)type) from++;
        if (from == g->nthemes) continue; /* the vocabulary has no such theme */
        for (size_t to = head; to-- > 0;) {
            if (head_count_of_type(g, head, g->themes[to].type) < 2) continue;
            theme_info tmp = g->themes[to];
            g->themes[to] = g->themes[from];
            g->themes[from] = tmp;
            break;
        }
    }
}

/* ------------------------------------------------------------ lifecycle --- */

void convgen_options_default(convgen_options *opt) {
    opt->count = DEFAULT_COUNT;
    opt->base_time = DEFAULT_BASE_TIME;
    opt->days = DEFAULT_DAYS;
    opt->noise_share = DEFAULT_NOISE;
}

convgen *convgen_new(const vocab *v, uint64_t seed, const convgen_options *opt) {
    convgen *g = xcalloc(1, sizeof *g);
    g->v = v;
    rng_seed(&g->rng, seed);
    if (opt) g->opt = *opt;
    else convgen_options_default(&g->opt);
    if (g->opt.count == 0) g->opt.count = DEFAULT_COUNT;
    if (g->opt.base_time == 0) g->opt.base_time = DEFAULT_BASE_TIME;
    if (g->opt.days <= 0) g->opt.days = DEFAULT_DAYS;
    if (!(g->opt.noise_share >= 0)) g->opt.noise_share = 0; /* also catches NaN */
    if (g->opt.noise_share > 1) g->opt.noise_share = 1;

    g->themes = xcalloc(v->nthemes ? v->nthemes : 1, sizeof *g->themes);
    for (size_t i = 0; i < v->nthemes; i++)
        if (theme_drawable(&v->themes[i])) theme_info_init(v, &v->themes[i], &g->themes[g->nthemes++]);
    /* Which themes are popular is part of what a seed decides. */
    for (size_t i = g->nthemes; i > 1; i--) {
        size_t j = below(g, i);
        theme_info tmp = g->themes[i - 1];
        g->themes[i - 1] = g->themes[j];
        g->themes[j] = tmp;
    }
    diversify_head(g);
    g->deck_len = MIN(g->opt.count, (size_t)MAX_DECK);
    g->deck = xcalloc(g->deck_len, sizeof *g->deck);
    deck_build(g);
    /* Intercom-like 15-digit ids, increasing by random gaps: unique per seed. */
    g->next_id = UINT64_C(215000000000000) + rng_below(&g->rng, UINT64_C(400000000000));
    return g;
}

void convgen_free(convgen *g) {
    if (!g) return;
    for (size_t i = 0; i < g->nthemes; i++) theme_info_free(&g->themes[i]);
    free(g->themes);
    free(g->deck);
    free(g);
}

/* ------------------------------------------------------ text post-edit --- */

/* 1-3 typos (swapped, missing or doubled letter) in words of 4+ letters. */
static void inject_typos(convgen *g, buf_t *b) {
    size_t starts[256], lens[256], n = 0;
    for (size_t i = 0; i < b->len && n < ARRAY_LEN(starts);) {
        if (!isalpha((unsigned char)b->data[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < b->len && isalpha((unsigned char)b->data[j])) j++;
        if (j - i >= 4) {
            starts[n] = i;
            lens[n++] = j - i;
        }
        i = j;
    }
    if (n == 0) return;
    size_t k = 1 + below(g, 3);
    int chosen[256] = {0};
    for (size_t t = 0; t < k; t++) chosen[below(g, n)] = 1;
    /* Right to left, so an edit never shifts a word still to be edited. */
    for (size_t w = n; w-- > 0;) {
        if (!chosen[w]) continue;
        size_t pos = starts[w] + 1 + below(g, lens[w] - 2); /* never the first or last letter */
        char *d = b->data;
        switch (below(g, 3)) {
        case 0: {
            char tmp = d[pos];
            d[pos] = d[pos + 1];
            d[pos + 1] = tmp;
            break;
        }
        case 1:
            memmove(d + pos, d + pos + 1, b->len - pos); /* moves the NUL too */
            b->len--;
            break;
        default:
            buf_reserve(b, 1);
            d = b->data;
            memmove(d + pos + 1, d + pos, b->len - pos + 1);
            b->len++;
            break;
        }
    }
}

/* Chat style: lower case, no sentence-ending dots/commas/bangs, sometimes no
 * apostrophes ("cant connect"). Dots inside words ("example.com") survive. */
static void casual_style(convgen *g, buf_t *b) {
    int drop_apostrophes = chance(g, 0.5);
    size_t w = 0;
    for (size_t r = 0; r < b->len; r++) {
        char ch = b->data[r];
        char next = r + 1 < b->len ? b->data[r + 1] : '\0';
        char prev = r ? b->data[r - 1] : '\0';
        if ((ch == '.' || ch == ',' || ch == '!') &&
            (next == '\0' || isspace((unsigned char)next) || next == '"'))
            continue;
        if (ch == '\'' && drop_apostrophes && isalpha((unsigned char)prev) &&
            isalpha((unsigned char)next))
            continue;
        b->data[w++] = (char)tolower((unsigned char)ch);
    }
    b->len = w;
    if (b->data) b->data[w] = '\0';
}

/* ------------------------------------------------------- conversations --- */

/* Appends a part (the same author mapping the parsers use); takes ownership of body
 * (may be NULL). */
static void add_part(conversation *c, const char *author_type, const char *part_type, char *body) {
    enum author a = strcmp(part_type, "note") == 0 ? AUTHOR_NOTE : author_from_type(author_type);
    conv_add_part(c, a, author_type, part_type, body);
    free(body);
}

static void add_tag(conversation *c, const char *tag) {
    for (size_t i = 0; i < c->ntags; i++)
        if (strcmp(c->tags[i], tag) == 0) return;
    conv_add_tag(c, tag);
}

static size_t agent_index(const char *id) { return (size_t)(fnv1a64_str(id) % ARRAY_LEN(AGENTS)); }

/* Mostly during North-American working hours, like the real inbox. */
static int64_t draw_created_at(convgen *g) {
    static const unsigned hour_weight[24] = {4, 3, 2, 2, 1, 1, 1, 2, 3, 4,  5,  6,
                                             7, 9, 10, 10, 10, 9, 9, 8, 7, 6, 5, 5};
    unsigned total = 0;
    for (size_t h = 0; h < 24; h++) total += hour_weight[h];
    size_t r = below(g, total), hour = 0;
    while (r >= hour_weight[hour]) r -= hour_weight[hour++];
    int64_t start = g->opt.base_time - (int64_t)g->opt.days * 86400;
    int64_t day = (int64_t)below(g, (size_t)g->opt.days);
    return start + day * 86400 + (int64_t)hour * 3600 + (int64_t)below(g, 3600);
}

static char *random_hex(convgen *g, size_t n) {
    char *s = xcalloc(n + 1, 1);
    for (size_t i = 0; i < n; i++) s[i] = "0123456789abcdef"[below(g, 16)];
    return s;
}

static void fill_contact(convgen *g, conversation *c, gen_ctx *ctx, int spammer) {
    ctx->cname = spammer ? PICK(g, SPAM_NAMES) : PICK(g, CUSTOMER_NAMES);
    char local[64];
    snprintf(local, sizeof local, "%s", ctx->cname);
    for (char *p = local; *p; p++) *p = (char)tolower((unsigned char)*p);
    const char *domain = spammer ? PICK(g, SPAM_DOMAINS) : PICK(g, EMAIL_DOMAINS);
    switch (spammer ? 0 : below(g, 4)) {
    case 0: c->contact_email = xasprintf("%s@%s", local, domain); break;
    case 1: c->contact_email = xasprintf("%s.%s@%s", local, PICK(g, LAST_INITIALS), domain); break;
    case 2: c->contact_email = xasprintf("%s%02zu@%s", local, below(g, 100), domain); break;
    default: c->contact_email = xasprintf("%s_%s@%s", local, PICK(g, LAST_INITIALS), domain); break;
    }
    ctx->email = c->contact_email;
    c->contact_id = random_hex(g, 24);
    c->external_id = spammer ? NULL : xasprintf("%zu", 1000000 + below(g, 9000000));
}

static void fill_common(convgen *g, conversation *c, gen_ctx *ctx) {
    c->id = xasprintf("%" PRIu64, g->next_id);
    g->next_id += 1 + rng_below(&g->rng, 4000);
    c->created_at = draw_created_at(g);
    ctx->created_at = c->created_at;
    ctx->agent = AGENTS[agent_index(c->id)].name;
    c->source_type = xstrdup(chance(g, 0.55) ? "email" : "conversation");
    c->delivered_as = xstrdup("customer_initiated");
    c->source_author_type = xstrdup("user");
}

static int is_email(const conversation *c) { return strcmp(c->source_type, "email") == 0; }

static char *theme_url(gen_ctx *ctx) {
    convgen *g = ctx->g;
    const theme_info *th = ctx->th;
    const char *pattern = th->url_patterns[below(g, th->nurl)];
    size_t n = strlen(pattern);
    char *url;
    if (n && pattern[n - 1] == '/') url = xasprintf(URL_BASE "%s%s", pattern, PICK(g, URL_SLUGS));
    else url = xasprintf(URL_BASE "%s%s", pattern, PICK(g, URL_QUERIES));
    /* A suffix must not make an earlier rule of another area match. */
    const char *got = vocab_url_area(g->v, url);
    if (!got || strcmp(got, th->area) != 0) {
        free(url);
        url = xasprintf(URL_BASE "%s", pattern);
    }
    return url;
}

/* The page an in-app message was sent from when it says nothing about the topic. */
static char *incidental_url(convgen *g) {
    if (g->v->nurl_rules && chance(g, 0.35)) {
        const char *pattern = g->v->url_rules[below(g, g->v->nurl_rules)].pattern;
        size_t n = strlen(pattern);
        return xasprintf(URL_BASE "%s%s", pattern, n && pattern[n - 1] == '/' ? "overview" : "");
    }
    return xasprintf(URL_BASE "%s", PICK(g, GENERIC_PAGES));
}

/* Whether the customer reported something broken (rather than asked). */
static int reports_problem(const gen_ctx *ctx, enum ctype_ix type) {
    if (type == CT_PRODUCT) return 1;
    return type == CT_ACCOUNT && !(ctx->th && ctx->th->request_like);
}

static char *support_reply(gen_ctx *ctx, enum ctype_ix type, const char *opening) {
    buf_t b = BUF_INIT;
    if (type == CT_SPAM) { /* a one-liner, no pleasantries */
        SPIN_PICK(ctx, &b, REPLY_SPAM);
        return buf_detach(&b);
    }
    if (reports_problem(ctx, type)) SPIN_PICK(ctx, &b, SUPPORT_HELLO_PROBLEM);
    else SPIN_PICK(ctx, &b, SUPPORT_HELLO);
    buf_puts(&b, "\n\n");
    tmpl_list replies = REPLIES[type];
    if (type == CT_ACCOUNT && ctx->th && ctx->th->request_like)
        replies = (tmpl_list)TLIST(REPLY_ACCOUNT_REQUEST);
    else if (type == CT_BILLING)
        replies = billing_replies(opening);
    spin_pick(ctx, &b, replies.v, replies.n);
    buf_puts(&b, "\n\n");
    SPIN_PICK(ctx, &b, SUPPORT_CLOSING);
    return buf_detach(&b);
}

static char *spun(gen_ctx *ctx, const char *const *tmpls, size_t n) {
    buf_t b = BUF_INIT;
    spin_pick(ctx, &b, tmpls, n);
    return buf_detach(&b);
}
#define SPUN(ctx, arr) spun((ctx), (arr), ARRAY_LEN(arr))

/* Everything after the opening message: routing bot, auto-reply, support
 * replies, customer follow-ups, internal notes; sets updated_at. */
static void build_thread(gen_ctx *ctx, conversation *c, enum ctype_ix type, double p_support) {
    convgen *g = ctx->g;
    int themed = ctx->th != NULL;
    int support = chance(g, p_support);
    int followup = chance(g, themed ? 0.40 : type == CT_SPAM ? 0.0 : 0.25);
    if (chance(g, 0.4)) add_part(c, "bot", "assignment", NULL);
    if (chance(g, 0.15)) add_part(c, "bot", "comment", SPUN(ctx, BOT_REPLIES));
    if (followup && !support)
        add_part(c, "user", "comment",
                 themed ? SPUN(ctx, FOLLOWUP_WAITING) : SPUN(ctx, NOISE_WAITING));
    if (support) {
        add_part(c, "admin", "comment", support_reply(ctx, type, c->source_body));
        if (chance(g, 0.12))
            add_part(c, "admin", "note",
                     type == CT_PRODUCT && themed ? SPUN(ctx, NOTES_PRODUCT) : SPUN(ctx, NOTES_OTHER));
        if (followup) {
            const exchange *x;
            if (!themed) x = PICK_EXCHANGE(g, NOISE_FOLLOWUPS);
            else if (reports_problem(ctx, type)) x = PICK_EXCHANGE(g, FOLLOWUP_AFTER_REPLY);
            else if (type == CT_FEATURE) x = PICK_EXCHANGE(g, FOLLOWUP_AFTER_FEATURE);
            else x = PICK_EXCHANGE(g, FOLLOWUP_AFTER_ANSWER);
            add_part(c, "user", "comment", spun(ctx, &x->customer, 1));
            if (chance(g, 0.45)) add_part(c, "admin", "comment", spun(ctx, &x->support, 1));
        }
        if (chance(g, 0.5)) add_part(c, "admin", "close", NULL);
    }
    int64_t t = c->created_at;
    for (size_t i = 0; i < c->nparts; i++) t += 60 * (int64_t)(2 + below(g, 720));
    c->updated_at = t;
}

static void maybe_tag(convgen *g, conversation *c) {
    if (chance(g, 0.3)) add_tag(c, PICK(g, TAGS));
    if (chance(g, 0.1)) add_tag(c, PICK(g, TAGS));
}

static int index_used(const size_t *idx, size_t n, size_t k) {
    for (size_t i = 0; i < n; i++)
        if (idx[i] == k) return 1;
    return 0;
}

/* Three keywords for this conversation, distinct when the theme has enough. */
static void pick_keywords(gen_ctx *ctx) {
    const vocab_theme *t = ctx->th->t;
    size_t n = t->nkeywords;
    if (n == 0) {
        ctx->kw[0] = ctx->kw[1] = ctx->kw[2] = ctx->th->topic;
        return;
    }
    size_t idx[3];
    for (size_t i = 0; i < 3; i++) {
        size_t k = below(ctx->g, n);
        while (i < n && index_used(idx, i, k)) k = (k + 1) % n;
        idx[i] = k;
        ctx->kw[i] = t->keywords[k];
    }
}

static void put_sentence(gen_ctx *ctx, buf_t *b, const char *const *tmpls, size_t n) {
    if (b->len && !isspace((unsigned char)b->data[b->len - 1])) buf_putc(b, ' ');
    spin_pick(ctx, b, tmpls, n);
}

/* greeting + situation + symptom(s) + detail + error + ask, then a typo/casual
 * pass; email adds paragraphs and a sign-off. */
static char *theme_opening(gen_ctx *ctx, int email) {
    convgen *g = ctx->g;
    const opening_set *os = &OPENINGS[ctx->th->type];
    if (ctx->th->type == CT_ACCOUNT && ctx->th->request_like) os = &ACCOUNT_REQUEST_OPENING;
    buf_t b = BUF_INIT;
    int foreign = chance(g, 0.04);
    if (foreign) SPIN_PICK(ctx, &b, FOREIGN_GREETINGS);
    else if (chance(g, email ? 0.8 : 0.55)) SPIN_PICK(ctx, &b, GREETINGS);
    if (b.len) buf_puts(&b, email ? "\n\n" : " ");
    put_sentence(ctx, &b, os->situation, os->nsituation);
    if (email && chance(g, 0.5)) buf_puts(&b, "\n\n");
    size_t first = below(g, os->nsymptom);
    put_sentence(ctx, &b, &os->symptom[first], 1);
    if (os->nsymptom > 1 && chance(g, 0.3)) { /* another keyword, in other words */
        size_t second = (first + 1 + below(g, os->nsymptom - 1)) % os->nsymptom;
        const char *k = ctx->kw[0];
        ctx->kw[0] = ctx->kw[1];
        put_sentence(ctx, &b, &os->symptom[second], 1);
        ctx->kw[0] = k;
    }
    if (chance(g, 0.5)) put_sentence(ctx, &b, os->detail, os->ndetail);
    if ((ctx->th->type == CT_PRODUCT && chance(g, 0.18)) ||
        (ctx->th->type == CT_ACCOUNT && chance(g, 0.08))) {
        static const char *const err[] = {
            "{The error says|I get this error|Error message}: \"$ERROR\""};
        put_sentence(ctx, &b, err, 1);
    }
    if (chance(g, 0.75)) put_sentence(ctx, &b, os->ask, os->nask);
    if (foreign) put_sentence(ctx, &b, FOREIGN_THANKS, ARRAY_LEN(FOREIGN_THANKS));
    if (chance(g, 0.15)) inject_typos(g, &b);
    if (chance(g, email ? 0.04 : 0.15)) casual_style(g, &b);
    if (email && chance(g, 0.6)) {
        buf_puts(&b, "\n\n");
        SPIN_PICK(ctx, &b, EMAIL_SIGNOFFS);
    }
    return buf_detach(&b);
}

static void gen_theme(gen_ctx *ctx, const theme_info *th, conversation *c, convgen_truth *truth) {
    convgen *g = ctx->g;
    ctx->th = th;
    pick_keywords(ctx);
    ctx->intent = th->nintents ? th->intents[below(g, th->nintents)] : NULL;
    fill_contact(g, c, ctx, 0);
    int email = is_email(c);
    c->source_body = theme_opening(ctx, email);
    if (email && chance(g, 0.75)) {
        buf_t b = BUF_INIT;
        SPIN_PICK(ctx, &b, SUBJECTS);
        c->subject = buf_detach(&b);
    } else {
        c->subject = xstrdup("");
    }
    if (!email) c->source_url = th->nurl && chance(g, 0.75) ? theme_url(ctx) : incidental_url(g);
    maybe_tag(g, c);
    build_thread(ctx, c, th->type, 0.70);
    snprintf(truth->conversation_type, sizeof truth->conversation_type, "%s", CTYPE_NAMES[th->type]);
    snprintf(truth->signature, sizeof truth->signature, "%s", th->t->signature);
}

/* Outbound messages (sent by an agent or a bot) that the quality filter drops;
 * the customer sometimes answers. */
static void gen_outbound(gen_ctx *ctx, const noise_tmpl *nt, conversation *c) {
    convgen *g = ctx->g;
    int by_bot = strstr(nt->text, "👋") != NULL || chance(g, 0.3);
    free(c->delivered_as);
    free(c->source_author_type);
    c->delivered_as = xstrdup(by_bot ? "automated" : "admin_initiated");
    c->source_author_type = xstrdup(by_bot ? "bot" : "admin");
    buf_t b = BUF_INIT;
    spin(ctx, &b, nt->text);
    c->source_body = buf_detach(&b);
    if (chance(g, 0.5)) add_part(c, "user", "comment", SPUN(ctx, OUTBOUND_REPLIES));
    int64_t t = c->created_at;
    for (size_t i = 0; i < c->nparts; i++) t += 60 * (int64_t)(30 + below(g, 2000));
    c->updated_at = t;
}

static void gen_noise(gen_ctx *ctx, enum noise_cat cat, conversation *c, convgen_truth *truth) {
    convgen *g = ctx->g;
    const noise_category *nc = &NOISE_CATS[cat];
    const noise_tmpl *nt = &nc->t[below(g, nc->n)];
    int spam = cat == NC_SPAM;
    if (spam) {
        free(c->source_type);
        c->source_type = xstrdup("email");
    }
    fill_contact(g, c, ctx, spam);
    int email = is_email(c);
    if (spam) c->subject = xstrdup(PICK(g, SPAM_SUBJECTS));
    else if (email && chance(g, 0.6)) c->subject = xstrdup(PICK(g, NOISE_SUBJECTS));
    else c->subject = xstrdup("");
    if (!email) c->source_url = incidental_url(g);
    if (cat == NC_OUTBOUND) {
        gen_outbound(ctx, nt, c);
    } else {
        buf_t b = BUF_INIT;
        /* Vague messages and greetings are sent exactly as they are; the rest
         * gets the same greeting/typo/style variation as theme messages. */
        int plain = cat == NC_VAGUE || cat == NC_GREETING || cat == NC_FOREIGN || spam;
        if (!plain && chance(g, 0.4)) {
            SPIN_PICK(ctx, &b, GREETINGS);
            buf_puts(&b, email ? "\n\n" : " ");
        }
        spin(ctx, &b, nt->text);
        if (!plain && chance(g, 0.1)) inject_typos(g, &b);
        if (!plain && chance(g, 0.1)) casual_style(g, &b);
        if (!plain && email && chance(g, 0.5)) {
            buf_puts(&b, "\n\n");
            SPIN_PICK(ctx, &b, EMAIL_SIGNOFFS);
        }
        c->source_body = buf_detach(&b);
        if (!spam) maybe_tag(g, c);
        build_thread(ctx, c, nt->type, nc->p_support);
    }
    snprintf(truth->conversation_type, sizeof truth->conversation_type, "%s", CTYPE_NAMES[nt->type]);
    snprintf(truth->signature, sizeof truth->signature, "-");
}

/* What the quality filter (conv.h, data_surfaces §1.5 with its quirks fixed)
 * will decide: customer-initiated, written by a user, not a template (compared
 * lower-cased, trimmed, without trailing punctuation), at least 20 characters. */
static int expected_quality(const conversation *c) {
    static const char *const templates[] = {"i have a product question or feedback",
                                            "i have a billing question", "hi", "hello", NULL};
    if (strcmp(c->delivered_as, "customer_initiated") != 0) return 0;
    if (strcmp(c->source_author_type, "user") != 0) return 0;
    buf_t b = BUF_INIT;
    int space = 0;
    for (const char *p = c->source_body ? c->source_body : ""; *p; p++) {
        if (isspace((unsigned char)*p)) {
            space = 1;
            continue;
        }
        if (space && b.len) buf_putc(&b, ' ');
        space = 0;
        buf_putc(&b, (char)tolower((unsigned char)*p));
    }
    size_t chars = utf8_count(buf_cstr(&b), b.len);
    size_t n = b.len;
    while (n && strchr(".!?,;: ", b.data[n - 1])) n--;
    int ok = chars >= QUALITY_MIN_BODY_CHARS;
    for (size_t i = 0; templates[i] && ok; i++)
        if (strlen(templates[i]) == n && strncmp(b.data, templates[i], n) == 0) ok = 0;
    buf_free(&b);
    return ok;
}

void convgen_next(convgen *g, conversation *out, convgen_truth *truth) {
    if (g->deck_pos == g->deck_len) deck_build(g);
    int32_t e = g->deck[g->deck_pos++];
    memset(truth, 0, sizeof *truth);
    gen_ctx ctx = {.g = g};
    fill_common(g, out, &ctx);
    if (e >= 0) gen_theme(&ctx, &g->themes[e], out, truth);
    else gen_noise(&ctx, (enum noise_cat)(-e - 1), out, truth);
    truth->actionable = llm_set_index(LLM_ACTIONABLE_TYPES, truth->conversation_type) >= 0;
    truth->passes_quality = expected_quality(out);
}

/* ---------------------------------------------------------- serialisers --- */

/* JSONL carries created_at as unix seconds for about one conversation in ten
 * (both forms are valid input); chosen from the id so it is a pure function. */
static int jsonl_unix_time(const conversation *c) { return fnv1a64_str(c->id) % 10 == 0; }

static const char *opening_author(const conversation *c) {
    if (strcmp(c->source_author_type, "admin") == 0) return "support";
    if (strcmp(c->source_author_type, "bot") == 0) return "bot";
    return "customer";
}

static const char *jsonl_author(const conv_message *m) {
    switch (m->author) {
    case AUTHOR_NOTE: return "note";
    case AUTHOR_SUPPORT: return "support";
    case AUTHOR_BOT: return "bot";
    default: return "customer";
    }
}

static json_t *jsonl_message(const char *author, const char *body) {
    json_t *m = json_object();
    json_object_set_new(m, "author", json_string(author));
    json_object_set_new(m, "body", jx_string(body));
    return m;
}

char *convgen_to_jsonl(const conversation *c) {
    json_t *o = json_object();
    json_object_set_new(o, "id", jx_string(c->id));
    if (jsonl_unix_time(c)) {
        json_object_set_new(o, "created_at", json_integer(c->created_at));
    } else {
        char ts[32];
        json_object_set_new(o, "created_at", json_string(iso8601_format(c->created_at, ts, sizeof ts)));
    }
    if (c->source_url) json_object_set_new(o, "source_url", jx_string(c->source_url));
    json_object_set_new(o, "subject", jx_string(c->subject ? c->subject : ""));
    json_t *msgs = json_array();
    if (c->source_body) json_array_append_new(msgs, jsonl_message(opening_author(c), c->source_body));
    for (size_t i = 0; i < c->nparts; i++) /* assignment/close parts have no body */
        if (c->parts[i].body) json_array_append_new(msgs, jsonl_message(jsonl_author(&c->parts[i]), c->parts[i].body));
    json_object_set_new(o, "messages", msgs);
    char *s = jx_dump(o);
    json_decref(o);
    return s;
}

static void html_escape(buf_t *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&': buf_puts(b, "&amp;"); break;
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '"': buf_puts(b, "&quot;"); break;
        case '\'': buf_puts(b, "&#39;"); break;
        default: buf_putc(b, s[i]); break;
        }
    }
}

/* One line of a paragraph; with linkify, http(s) URLs become <a> links. */
static void html_line(buf_t *b, const char *s, size_t n, int linkify) {
    size_t i = 0;
    while (i < n) {
        const char *url = NULL;
        if (linkify)
            for (size_t j = i; j < n && !url; j++)
                if ((n - j >= 8 && strncmp(s + j, "https://", 8) == 0) ||
                    (n - j >= 7 && strncmp(s + j, "http://", 7) == 0))
                    url = s + j;
        if (!url) {
            html_escape(b, s + i, n - i);
            return;
        }
        size_t start = (size_t)(url - s), end = start;
        while (end < n && !isspace((unsigned char)s[end])) end++;
        while (end > start && strchr(".,;:!?)", s[end - 1])) end--;
        html_escape(b, s + i, start - i);
        buf_puts(b, "<a href=\"");
        html_escape(b, s + start, end - start);
        buf_puts(b, "\">");
        html_escape(b, s + start, end - start);
        buf_puts(b, "</a>");
        i = end;
    }
}

/* Plain text to Intercom-style HTML: blank-line separated paragraphs become
 * <p>...</p>, single newlines <br>, and & < > " ' entities. */
static char *text_to_html(const char *text, int linkify) {
    buf_t b = BUF_INIT;
    const char *p = text;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        size_t n = end ? (size_t)(end - p) : strlen(p);
        buf_puts(&b, "<p>");
        for (size_t i = 0; i < n;) {
            const char *nl = memchr(p + i, '\n', n - i);
            size_t ln = nl ? (size_t)(nl - (p + i)) : n - i;
            html_line(&b, p + i, ln, linkify);
            i += ln;
            if (nl) {
                buf_puts(&b, "<br>");
                i++;
            }
        }
        buf_puts(&b, "</p>");
        p += n;
        while (*p == '\n') p++;
    }
    return buf_detach(&b);
}

static json_t *html_or_null(const char *text, int linkify) {
    if (!text) return json_null();
    char *h = text_to_html(text, linkify);
    json_t *j = jx_string(h);
    free(h);
    return j;
}

static json_t *id_string(uint64_t v) {
    char s[32];
    snprintf(s, sizeof s, "%" PRIu64, v);
    return json_string(s);
}

/* The customer's display name, recovered from the email's local part. */
static json_t *contact_name(const conversation *c) {
    if (!c->contact_email) return json_null();
    char name[64];
    size_t n = 0;
    for (const char *p = c->contact_email; *p && isalpha((unsigned char)*p) && n + 1 < sizeof name; p++)
        name[n++] = *p;
    name[n] = '\0';
    if (n) name[0] = (char)toupper((unsigned char)name[0]);
    return json_string(n ? name : "Customer");
}

static json_t *author_json(const conversation *c, const char *type) {
    json_t *a = json_object();
    json_object_set_new(a, "type", json_string(type));
    if (strcmp(type, "admin") == 0) {
        size_t k = agent_index(c->id);
        char email[64];
        snprintf(email, sizeof email, "%s@support.example.com", AGENTS[k].name);
        for (char *p = email; *p; p++) *p = (char)tolower((unsigned char)*p);
        json_object_set_new(a, "id", json_string(AGENTS[k].id));
        json_object_set_new(a, "name", json_string(AGENTS[k].name));
        json_object_set_new(a, "email", json_string(email));
    } else if (strcmp(type, "bot") == 0) {
        json_object_set_new(a, "id", json_string("9"));
        json_object_set_new(a, "name", json_string("Support Bot"));
    } else {
        json_object_set_new(a, "id", jx_string_or_null(c->contact_id));
        json_object_set_new(a, "name", contact_name(c));
        json_object_set_new(a, "email", jx_string_or_null(c->contact_email));
    }
    return a;
}

static json_t *intercom_source(const conversation *c, uint64_t h) {
    json_t *s = json_object();
    json_object_set_new(s, "type", jx_string(c->source_type));
    json_object_set_new(s, "id", id_string(UINT64_C(2700000000) + h % UINT64_C(100000000)));
    json_object_set_new(s, "delivered_as", jx_string(c->delivered_as));
    json_object_set_new(s, "subject", jx_string(c->subject ? c->subject : ""));
    json_object_set_new(s, "url", jx_string_or_null(c->source_url));
    json_object_set_new(s, "body", html_or_null(c->source_body, 0));
    json_object_set_new(s, "author", author_json(c, c->source_author_type));
    return s;
}

static json_t *intercom_contacts(const conversation *c) {
    json_t *contact = json_object();
    json_object_set_new(contact, "type", json_string("contact"));
    json_object_set_new(contact, "id", jx_string_or_null(c->contact_id));
    json_object_set_new(contact, "external_id", jx_string_or_null(c->external_id));
    json_t *list = json_object();
    json_object_set_new(list, "type", json_string("contact.list"));
    json_t *arr = json_array();
    json_array_append_new(arr, contact);
    json_object_set_new(list, "contacts", arr);
    return list;
}

static json_t *intercom_tags(const conversation *c) {
    json_t *arr = json_array();
    for (size_t i = 0; i < c->ntags; i++) {
        json_t *t = json_object();
        json_object_set_new(t, "type", json_string("tag"));
        json_object_set_new(t, "id", id_string(100 + fnv1a64_str(c->tags[i]) % 900));
        json_object_set_new(t, "name", jx_string(c->tags[i]));
        json_array_append_new(arr, t);
    }
    json_t *list = json_object();
    json_object_set_new(list, "type", json_string("tag.list"));
    json_object_set_new(list, "tags", arr);
    return list;
}

static json_t *intercom_parts(const conversation *c, uint64_t h, int64_t updated) {
    json_t *arr = json_array();
    uint64_t base = UINT64_C(20000000000) + (h % UINT64_C(1000000000)) * 16;
    for (size_t i = 0; i < c->nparts; i++) {
        const conv_message *m = &c->parts[i];
        /* Parts carry no times of their own here: spread them evenly over the thread. */
        int64_t t = c->created_at + (updated - c->created_at) * (int64_t)(i + 1) / (int64_t)c->nparts;
        int support = m->author == AUTHOR_SUPPORT || m->author == AUTHOR_BOT;
        json_t *p = json_object();
        json_object_set_new(p, "type", json_string("conversation_part"));
        json_object_set_new(p, "id", id_string(base + i));
        json_object_set_new(p, "part_type", jx_string(m->part_type));
        json_object_set_new(p, "body", html_or_null(m->body, support));
        json_object_set_new(p, "created_at", json_integer(t));
        json_object_set_new(p, "updated_at", json_integer(t));
        json_object_set_new(p, "author", author_json(c, m->author_type));
        json_array_append_new(arr, p);
    }
    json_t *list = json_object();
    json_object_set_new(list, "type", json_string("conversation_part.list"));
    json_object_set_new(list, "total_count", json_integer((json_int_t)c->nparts));
    json_object_set_new(list, "conversation_parts", arr);
    return list;
}

json_t *convgen_to_intercom(const conversation *c) {
    uint64_t h = fnv1a64_str(c->id);
    int64_t updated = c->updated_at > c->created_at ? c->updated_at : c->created_at;
    int closed = c->nparts && strcmp(c->parts[c->nparts - 1].part_type, "close") == 0;
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("conversation"));
    json_object_set_new(o, "id", jx_string(c->id));
    json_object_set_new(o, "created_at", json_integer(c->created_at));
    json_object_set_new(o, "updated_at", json_integer(updated));
    json_object_set_new(o, "state", json_string(closed ? "closed" : "open"));
    json_object_set_new(o, "open", json_boolean(!closed));
    json_object_set_new(o, "read", json_true());
    json_object_set_new(o, "priority", json_string("not_priority"));
    json_object_set_new(o, "source", intercom_source(c, h));
    json_object_set_new(o, "contacts", intercom_contacts(c));
    json_object_set_new(o, "tags", intercom_tags(c));
    json_object_set_new(o, "custom_attributes", json_object());
    json_object_set_new(o, "conversation_parts", intercom_parts(c, h, updated));
    return o;
}
