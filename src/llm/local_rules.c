/* The offline analyzer's rule-based tasks: stage-1 classification (type, confidence,
 * urgency), stage-2 refinement from the support replies, and facets (action type,
 * direction, symptom, user goal). All rules are generic English support phrasing,
 * weighted, matched once per phrase over stemmed tokens (so "crashes", "crashed" and
 * "crashing" all hit "crash"); product names come only from the vocabulary. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llm/local_internal.h"
#include "text/signature.h"
#include "util/jsonx.h"
#include "util/mem.h"
#include "util/utf8.h"

/* ------------------------------------------------------------ rule tables */

enum rgroup {
    RG_TYPE,      /* value: enum ctype */
    RG_URG_CRIT,  /* urgency critical */
    RG_URG_HIGH,  /* urgency high */
    RG_SUPPORT,   /* value: enum sclass (support reply evidence) */
    RG_ACTION,    /* value: enum atype */
    RG_DIR,       /* value: enum dir */
    RG_GOAL       /* "i want to", "trying to": the goal follows */
};

/* Same order as LLM_CONVERSATION_TYPES. */
enum ctype { CT_PRODUCT, CT_HOWTO, CT_FEATURE, CT_ACCOUNT, CT_BILLING, CT_CONFIG, CT_GENERAL,
             CT_SPAM, CT_COUNT };
/* Same order as LLM_ACTION_TYPES. */
enum atype { AT_INQUIRY, AT_COMPLAINT, AT_BUG, AT_HOWTO, AT_FEATURE, AT_ACCOUNT, AT_DELETE,
             AT_UNKNOWN, AT_COUNT };
/* Same order as LLM_DIRECTIONS. */
enum dir { DR_EXCESS, DR_DEFICIT, DR_CREATION, DR_DELETION, DR_MODIFICATION, DR_PERFORMANCE,
           DR_NEUTRAL, DR_COUNT };
enum sclass { SC_BUG, SC_HOWTO, SC_FEATURE, SC_WORKAROUND, SC_MANUAL, SC_CAUSE, SC_COUNT };

/* Tie-break orders (first wins): the more specific, more actionable reading first. */
static const int TYPE_PRIORITY[CT_COUNT] = {CT_SPAM,    CT_BILLING, CT_ACCOUNT, CT_PRODUCT,
                                            CT_FEATURE, CT_HOWTO,   CT_CONFIG,  CT_GENERAL};
static const int ACTION_PRIORITY[AT_COUNT] = {AT_DELETE,  AT_ACCOUNT,   AT_BUG,     AT_FEATURE,
                                              AT_HOWTO,   AT_COMPLAINT, AT_INQUIRY, AT_UNKNOWN};
static const int DIR_PRIORITY[DR_COUNT] = {DR_EXCESS,       DR_DEFICIT,  DR_PERFORMANCE,
                                           DR_DELETION,     DR_MODIFICATION, DR_CREATION,
                                           DR_NEUTRAL};

typedef struct rule_def {
    const char *phrase;
    unsigned char group;
    unsigned char value;
    float weight;
} rule_def;

#define T(p, v, w) {p, RG_TYPE, v, w}
#define A(p, v, w) {p, RG_ACTION, v, w}
#define D(p, v, w) {p, RG_DIR, v, w}
#define S(p, v, w) {p, RG_SUPPORT, v, w}

static const rule_def RULES[] = {
    /* --- spam: unsolicited offers --- */
    T("seo", CT_SPAM, 2), T("backlink", CT_SPAM, 3), T("guest post", CT_SPAM, 3),
    T("link building", CT_SPAM, 3), T("crypto", CT_SPAM, 2), T("cryptocurrency", CT_SPAM, 2),
    T("bitcoin", CT_SPAM, 2), T("dear sir", CT_SPAM, 3), T("dear madam", CT_SPAM, 3),
    T("rank your website", CT_SPAM, 3), T("first page of google", CT_SPAM, 3),
    T("increase your traffic", CT_SPAM, 2), T("domain authority", CT_SPAM, 3),
    T("sponsored post", CT_SPAM, 2), T("casino", CT_SPAM, 3), T("forex", CT_SPAM, 3),
    T("investment opportunity", CT_SPAM, 3), T("limited time offer", CT_SPAM, 2),
    T("earn money", CT_SPAM, 2), T("make money", CT_SPAM, 2), T("our services", CT_SPAM, 1),
    T("we offer", CT_SPAM, 1), T("web design services", CT_SPAM, 2),
    T("click here", CT_SPAM, 1), T("business proposal", CT_SPAM, 2),
    /* --- billing --- */
    T("refund", CT_BILLING, 3), T("charge", CT_BILLING, 2), T("invoice", CT_BILLING, 3),
    T("subscription", CT_BILLING, 2), T("cancel my plan", CT_BILLING, 3),
    T("cancel my subscription", CT_BILLING, 3), T("cancel my account", CT_BILLING, 2),
    T("billing", CT_BILLING, 3), T("billed", CT_BILLING, 3), T("receipt", CT_BILLING, 3),
    T("pricing", CT_BILLING, 2), T("price", CT_BILLING, 1.5), T("payment", CT_BILLING, 2),
    T("credit card", CT_BILLING, 2), T("card declined", CT_BILLING, 3),
    T("money back", CT_BILLING, 3), T("downgrade", CT_BILLING, 2), T("upgrade", CT_BILLING, 1.5),
    T("discount", CT_BILLING, 2), T("coupon", CT_BILLING, 2), T("renewal", CT_BILLING, 2),
    T("renew", CT_BILLING, 2), T("annual plan", CT_BILLING, 2), T("monthly plan", CT_BILLING, 2),
    T("trial", CT_BILLING, 1), T("paid", CT_BILLING, 1), T("plan", CT_BILLING, 1),
    /* --- account --- */
    T("log in", CT_ACCOUNT, 3), T("login", CT_ACCOUNT, 3), T("sign in", CT_ACCOUNT, 3),
    T("can't log in", CT_ACCOUNT, 4), T("can't sign in", CT_ACCOUNT, 4),
    T("password", CT_ACCOUNT, 3), T("locked out", CT_ACCOUNT, 3), T("2fa", CT_ACCOUNT, 3),
    T("two factor", CT_ACCOUNT, 3), T("two-factor", CT_ACCOUNT, 3),
    T("verification code", CT_ACCOUNT, 2), T("email change", CT_ACCOUNT, 3),
    T("change my email", CT_ACCOUNT, 3), T("change email", CT_ACCOUNT, 3),
    T("update my email", CT_ACCOUNT, 3), T("account locked", CT_ACCOUNT, 3),
    T("account suspended", CT_ACCOUNT, 3), T("account disabled", CT_ACCOUNT, 3),
    T("access my account", CT_ACCOUNT, 3), T("username", CT_ACCOUNT, 2),
    T("reset link", CT_ACCOUNT, 2), T("delete my account", CT_ACCOUNT, 2),
    T("sign up", CT_ACCOUNT, 1.5), T("signup", CT_ACCOUNT, 1.5),
    /* --- how-to questions --- */
    T("how do i", CT_HOWTO, 3), T("how can i", CT_HOWTO, 3), T("how would i", CT_HOWTO, 3),
    T("how to", CT_HOWTO, 2), T("is there a way", CT_HOWTO, 3), T("where do i", CT_HOWTO, 3),
    T("where can i", CT_HOWTO, 3), T("where is", CT_HOWTO, 1.5), T("is it possible", CT_HOWTO, 2.5),
    T("what is the best way", CT_HOWTO, 2.5), T("how does", CT_HOWTO, 2),
    T("what does", CT_HOWTO, 1.5), T("tutorial", CT_HOWTO, 2), T("explain", CT_HOWTO, 1.5),
    T("do you know how", CT_HOWTO, 2),
    /* --- feature requests --- */
    T("would be great", CT_FEATURE, 3), T("please add", CT_FEATURE, 3),
    T("feature request", CT_FEATURE, 4), T("request a feature", CT_FEATURE, 4),
    T("wish", CT_FEATURE, 2.5), T("would love", CT_FEATURE, 3), T("suggestion", CT_FEATURE, 3),
    T("suggest", CT_FEATURE, 2), T("would be nice", CT_FEATURE, 3),
    T("would be helpful", CT_FEATURE, 2.5), T("could you add", CT_FEATURE, 3),
    T("can you add", CT_FEATURE, 3), T("add the ability", CT_FEATURE, 3),
    T("add an option", CT_FEATURE, 3), T("add support for", CT_FEATURE, 3),
    T("option to", CT_FEATURE, 1.5), T("ability to", CT_FEATURE, 1.5),
    T("any plans", CT_FEATURE, 2.5), T("in the future", CT_FEATURE, 1.5),
    T("roadmap", CT_FEATURE, 2), T("i would like to see", CT_FEATURE, 3),
    /* --- product issues --- */
    T("error", CT_PRODUCT, 2.5), T("not working", CT_PRODUCT, 3), T("fail", CT_PRODUCT, 2),
    T("failure", CT_PRODUCT, 2), T("broken", CT_PRODUCT, 3), T("broke", CT_PRODUCT, 2),
    T("stuck", CT_PRODUCT, 2), T("bug", CT_PRODUCT, 3), T("glitch", CT_PRODUCT, 3),
    T("crash", CT_PRODUCT, 3), T("doesn't", CT_PRODUCT, 1.5), T("won't", CT_PRODUCT, 1.5),
    T("didn't", CT_PRODUCT, 1), T("can't", CT_PRODUCT, 1), T("unable to", CT_PRODUCT, 1.5),
    T("missing", CT_PRODUCT, 2), T("not showing", CT_PRODUCT, 2.5),
    T("not appearing", CT_PRODUCT, 2.5), T("not loading", CT_PRODUCT, 2.5),
    T("not posting", CT_PRODUCT, 2.5), T("never posted", CT_PRODUCT, 2.5),
    T("not syncing", CT_PRODUCT, 2.5), T("not updating", CT_PRODUCT, 2.5),
    T("stopped working", CT_PRODUCT, 3), T("disappeared", CT_PRODUCT, 2.5),
    T("gone", CT_PRODUCT, 2), T("lost", CT_PRODUCT, 2), T("duplicate", CT_PRODUCT, 2), T("twice", CT_PRODUCT, 1.5), T("wrong", CT_PRODUCT, 1.5),
    T("incorrect", CT_PRODUCT, 1.5), T("blank", CT_PRODUCT, 1.5), T("freeze", CT_PRODUCT, 2),
    T("frozen", CT_PRODUCT, 2), T("timeout", CT_PRODUCT, 2), T("timed out", CT_PRODUCT, 2),
    T("slow", CT_PRODUCT, 1.5), T("problem", CT_PRODUCT, 1.5), T("issue", CT_PRODUCT, 1),
    /* --- configuration help --- */
    T("settings", CT_CONFIG, 2), T("setup", CT_CONFIG, 2), T("set up", CT_CONFIG, 2),
    T("configure", CT_CONFIG, 3), T("configuration", CT_CONFIG, 3), T("connect", CT_CONFIG, 1.5),
    T("integrate", CT_CONFIG, 1.5), T("integration", CT_CONFIG, 1.5), T("install", CT_CONFIG, 2),
    T("instructions", CT_CONFIG, 1), T("enable", CT_CONFIG, 1.5), T("disable", CT_CONFIG, 1.5),
    T("turn on", CT_CONFIG, 1.5), T("turn off", CT_CONFIG, 1.5), T("dns", CT_CONFIG, 3),
    T("api key", CT_CONFIG, 3), T("webhook", CT_CONFIG, 3), T("permissions", CT_CONFIG, 1.5),

    /* --- urgency --- */
    {"urgent", RG_URG_CRIT, 0, 1}, {"urgently", RG_URG_CRIT, 0, 1}, {"asap", RG_URG_CRIT, 0, 1},
    {"emergency", RG_URG_CRIT, 0, 1}, {"immediately", RG_URG_CRIT, 0, 1},
    {"losing money", RG_URG_CRIT, 0, 1}, {"losing sales", RG_URG_CRIT, 0, 1},
    {"losing customers", RG_URG_CRIT, 0, 1}, {"losing business", RG_URG_CRIT, 0, 1},
    {"business is down", RG_URG_CRIT, 0, 1}, {"critical", RG_URG_CRIT, 0, 1},
    {"can't", RG_URG_HIGH, 0, 1}, {"unable to", RG_URG_HIGH, 0, 1}, {"blocked", RG_URG_HIGH, 0, 1},
    {"broken", RG_URG_HIGH, 0, 1}, {"not working", RG_URG_HIGH, 0, 1},
    {"stopped working", RG_URG_HIGH, 0, 1}, {"doesn't work", RG_URG_HIGH, 0, 1},
    {"is down", RG_URG_HIGH, 0, 1}, {"locked out", RG_URG_HIGH, 0, 1},

    /* --- what support replies reveal --- */
    S("known issue", SC_BUG, 3), S("bug", SC_BUG, 3), S("engineering", SC_BUG, 3),
    S("engineers", SC_BUG, 3), S("investigating", SC_BUG, 3), S("looking into", SC_BUG, 2),
    S("escalated", SC_BUG, 3), S("escalate", SC_BUG, 3), S("developers", SC_BUG, 3),
    S("dev team", SC_BUG, 3), S("technical team", SC_BUG, 2.5), S("reproduce", SC_BUG, 2),
    S("glitch", SC_BUG, 2), S("outage", SC_BUG, 3), S("on our end", SC_BUG, 2),
    S("a fix", SC_BUG, 2), S("been fixed", SC_BUG, 2.5), S("deployed a fix", SC_BUG, 3),
    S("you can", SC_HOWTO, 2), S("go to", SC_HOWTO, 2), S("here's how", SC_HOWTO, 3),
    S("here is how", SC_HOWTO, 3), S("steps", SC_HOWTO, 2), S("click", SC_HOWTO, 2),
    S("navigate to", SC_HOWTO, 2), S("follow these", SC_HOWTO, 2), S("instructions", SC_HOWTO, 2),
    S("this article", SC_HOWTO, 2), S("help article", SC_HOWTO, 2), S("select", SC_HOWTO, 1),
    S("you'll need to", SC_HOWTO, 1.5), S("make sure", SC_HOWTO, 1.5), S("simply", SC_HOWTO, 1),
    S("passed to product", SC_FEATURE, 3), S("passed this along", SC_FEATURE, 3),
    S("pass this along", SC_FEATURE, 3), S("feature request", SC_FEATURE, 4),
    S("roadmap", SC_FEATURE, 3), S("not currently possible", SC_FEATURE, 3),
    S("not possible at the moment", SC_FEATURE, 3), S("not currently available", SC_FEATURE, 3),
    S("not available yet", SC_FEATURE, 3), S("don't currently support", SC_FEATURE, 3),
    S("not supported", SC_FEATURE, 2), S("product team", SC_FEATURE, 2.5),
    S("great suggestion", SC_FEATURE, 3), S("great idea", SC_FEATURE, 3), S("upvote", SC_FEATURE, 3),
    S("workaround", SC_WORKAROUND, 3), S("work around", SC_WORKAROUND, 3),
    S("in the meantime", SC_WORKAROUND, 2), S("temporary fix", SC_WORKAROUND, 3),
    S("clear your cache", SC_WORKAROUND, 2), S("clearing your cache", SC_WORKAROUND, 2),
    S("different browser", SC_WORKAROUND, 2), S("incognito", SC_WORKAROUND, 2),
    S("log out and back in", SC_WORKAROUND, 2), S("for now", SC_WORKAROUND, 1.5),
    S("i've gone ahead", SC_MANUAL, 3), S("i went ahead", SC_MANUAL, 3),
    S("i've refunded", SC_MANUAL, 3), S("i have refunded", SC_MANUAL, 3),
    S("i've updated", SC_MANUAL, 2.5), S("i've reset", SC_MANUAL, 2.5), S("i've removed", SC_MANUAL, 2.5),
    S("i've changed", SC_MANUAL, 2.5), S("i've fixed", SC_MANUAL, 2.5), S("i have fixed", SC_MANUAL, 2.5),
    S("i've added", SC_MANUAL, 2.5), S("on my end", SC_MANUAL, 1.5),
    S("caused by", SC_CAUSE, 1), S("due to", SC_CAUSE, 1), S("because", SC_CAUSE, 1),
    S("the issue is", SC_CAUSE, 1), S("the problem is", SC_CAUSE, 1),
    S("this happens when", SC_CAUSE, 1), S("the reason", SC_CAUSE, 1),

    /* --- facets: action type --- */
    A("delete my account", AT_DELETE, 4), A("delete account", AT_DELETE, 4),
    A("remove my account", AT_DELETE, 4), A("close my account", AT_DELETE, 4),
    A("delete my data", AT_DELETE, 4), A("remove my data", AT_DELETE, 4),
    A("delete my profile", AT_DELETE, 4), A("gdpr", AT_DELETE, 3), A("deactivate", AT_DELETE, 3),
    A("change my email", AT_ACCOUNT, 3), A("change email", AT_ACCOUNT, 3),
    A("update my email", AT_ACCOUNT, 3), A("change password", AT_ACCOUNT, 3),
    A("change my password", AT_ACCOUNT, 3), A("reset password", AT_ACCOUNT, 2.5),
    A("reset my password", AT_ACCOUNT, 2.5), A("change my username", AT_ACCOUNT, 3),
    A("change my plan", AT_ACCOUNT, 3), A("switch plan", AT_ACCOUNT, 3), A("upgrade", AT_ACCOUNT, 2),
    A("downgrade", AT_ACCOUNT, 2.5), A("cancel my subscription", AT_ACCOUNT, 3),
    A("cancel subscription", AT_ACCOUNT, 3), A("cancel my plan", AT_ACCOUNT, 3),
    A("update my card", AT_ACCOUNT, 3), A("update my billing", AT_ACCOUNT, 2.5),
    A("transfer my account", AT_ACCOUNT, 2.5), A("change the email", AT_ACCOUNT, 3),
    A("update the email", AT_ACCOUNT, 3), A("change my username", AT_ACCOUNT, 3),
    A("error", AT_BUG, 2.5), A("not working", AT_BUG, 3), A("broken", AT_BUG, 3), A("bug", AT_BUG, 3),
    A("crash", AT_BUG, 3), A("fail", AT_BUG, 2), A("failure", AT_BUG, 2), A("stuck", AT_BUG, 2),
    A("not showing", AT_BUG, 2.5), A("not appearing", AT_BUG, 2.5), A("not loading", AT_BUG, 2.5),
    A("not posting", AT_BUG, 2.5), A("never posted", AT_BUG, 2.5), A("missing", AT_BUG, 2),
    A("duplicate", AT_BUG, 2), A("twice", AT_BUG, 1.5), A("glitch", AT_BUG, 3),
    A("doesn't work", AT_BUG, 3), A("stopped working", AT_BUG, 3), A("disappeared", AT_BUG, 2.5),
    A("wrong", AT_BUG, 1.5), A("blank", AT_BUG, 1.5), A("won't", AT_BUG, 1.5),
    A("slow", AT_BUG, 2), A("takes forever", AT_BUG, 2), A("nothing happens", AT_BUG, 2.5),
    A("timeout", AT_BUG, 2), A("timed out", AT_BUG, 2), A("freeze", AT_BUG, 2),
    A("would be great", AT_FEATURE, 3), A("please add", AT_FEATURE, 3),
    A("feature request", AT_FEATURE, 4), A("wish", AT_FEATURE, 2.5), A("would love", AT_FEATURE, 3),
    A("suggestion", AT_FEATURE, 3), A("would be nice", AT_FEATURE, 3),
    A("could you add", AT_FEATURE, 3), A("can you add", AT_FEATURE, 3),
    A("add the ability", AT_FEATURE, 3), A("add an option", AT_FEATURE, 3), A("any plans", AT_FEATURE, 2.5),
    A("how do i", AT_HOWTO, 3), A("how can i", AT_HOWTO, 3), A("how to", AT_HOWTO, 2),
    A("is there a way", AT_HOWTO, 3), A("where do i", AT_HOWTO, 3), A("where can i", AT_HOWTO, 3),
    A("is it possible", AT_HOWTO, 2.5),
    A("frustrated", AT_COMPLAINT, 2.5), A("frustrating", AT_COMPLAINT, 2.5),
    A("disappointed", AT_COMPLAINT, 2.5), A("terrible", AT_COMPLAINT, 3),
    A("unacceptable", AT_COMPLAINT, 3), A("ridiculous", AT_COMPLAINT, 3), A("worst", AT_COMPLAINT, 3),
    A("angry", AT_COMPLAINT, 2), A("waste of", AT_COMPLAINT, 2.5), A("fed up", AT_COMPLAINT, 3),
    A("annoying", AT_COMPLAINT, 2), A("horrible", AT_COMPLAINT, 3), A("awful", AT_COMPLAINT, 3),
    A("not happy", AT_COMPLAINT, 2.5), A("unhappy", AT_COMPLAINT, 2.5),
    A("poor service", AT_COMPLAINT, 3), A("still waiting", AT_COMPLAINT, 2),
    A("question", AT_INQUIRY, 1.5), A("wondering", AT_INQUIRY, 1.5), A("curious", AT_INQUIRY, 1.5),
    A("would like to know", AT_INQUIRY, 2), A("do you", AT_INQUIRY, 1), A("does it", AT_INQUIRY, 1),
    A("can i", AT_INQUIRY, 1), A("i want to", AT_INQUIRY, 1), A("i would like to", AT_INQUIRY, 1),

    /* --- facets: direction --- */
    D("duplicate", DR_EXCESS, 3), D("duplicated", DR_EXCESS, 3), D("twice", DR_EXCESS, 3),
    D("double", DR_EXCESS, 2.5), D("too many", DR_EXCESS, 3), D("multiple times", DR_EXCESS, 3),
    D("three times", DR_EXCESS, 3), D("over and over", DR_EXCESS, 2.5), D("repeatedly", DR_EXCESS, 2),
    D("again and again", DR_EXCESS, 2.5), D("extra", DR_EXCESS, 1.5), D("spamming", DR_EXCESS, 2),
    D("missing", DR_DEFICIT, 3), D("not showing", DR_DEFICIT, 3), D("not appearing", DR_DEFICIT, 3),
    D("disappeared", DR_DEFICIT, 3), D("never posted", DR_DEFICIT, 3), D("not posting", DR_DEFICIT, 3),
    D("not published", DR_DEFICIT, 3), D("not publishing", DR_DEFICIT, 3), D("lost", DR_DEFICIT, 3),
    D("gone", DR_DEFICIT, 2.5), D("empty", DR_DEFICIT, 2), D("blank", DR_DEFICIT, 2),
    D("zero", DR_DEFICIT, 2), D("nothing", DR_DEFICIT, 1.5), D("not received", DR_DEFICIT, 3),
    D("never arrived", DR_DEFICIT, 3), D("not syncing", DR_DEFICIT, 2.5),
    D("not pulling", DR_DEFICIT, 2.5), D("no longer", DR_DEFICIT, 1.5), D("can't find", DR_DEFICIT, 2),
    D("not loading", DR_DEFICIT, 2), D("didn't post", DR_DEFICIT, 3),
    D("nothing happens", DR_DEFICIT, 2.5), D("never published", DR_DEFICIT, 3),
    D("never get published", DR_DEFICIT, 3), D("never got posted", DR_DEFICIT, 3),
    D("never went out", DR_DEFICIT, 3), D("never showed up", DR_DEFICIT, 3),
    D("slow", DR_PERFORMANCE, 3), D("slowly", DR_PERFORMANCE, 3), D("loading", DR_PERFORMANCE, 1.5),
    D("takes forever", DR_PERFORMANCE, 3), D("forever", DR_PERFORMANCE, 2),
    D("timeout", DR_PERFORMANCE, 3), D("time out", DR_PERFORMANCE, 3), D("timed out", DR_PERFORMANCE, 3),
    D("timing out", DR_PERFORMANCE, 3), D("lag", DR_PERFORMANCE, 3), D("laggy", DR_PERFORMANCE, 3),
    D("spinning", DR_PERFORMANCE, 2.5), D("keeps loading", DR_PERFORMANCE, 3),
    D("hangs", DR_PERFORMANCE, 2), D("freeze", DR_PERFORMANCE, 2.5), D("frozen", DR_PERFORMANCE, 2.5),
    D("sluggish", DR_PERFORMANCE, 3), D("long time", DR_PERFORMANCE, 2),
    D("performance", DR_PERFORMANCE, 2.5),
    D("delete", DR_DELETION, 3), D("remove", DR_DELETION, 3), D("erase", DR_DELETION, 2.5),
    D("clear", DR_DELETION, 1.5), D("unschedule", DR_DELETION, 2.5), D("get rid of", DR_DELETION, 2.5),
    D("change", DR_MODIFICATION, 2), D("edit", DR_MODIFICATION, 2.5), D("update", DR_MODIFICATION, 2),
    D("modify", DR_MODIFICATION, 2.5), D("rename", DR_MODIFICATION, 2.5), D("move", DR_MODIFICATION, 2),
    D("switch", DR_MODIFICATION, 2), D("replace", DR_MODIFICATION, 2), D("reorder", DR_MODIFICATION, 2.5),
    D("adjust", DR_MODIFICATION, 2),
    D("create", DR_CREATION, 2), D("add", DR_CREATION, 1.5), D("new", DR_CREATION, 1),
    D("generate", DR_CREATION, 2), D("set up", DR_CREATION, 1.5), D("upload", DR_CREATION, 1.5),
    D("import", DR_CREATION, 1.5), D("build", DR_CREATION, 1.5), D("make", DR_CREATION, 1),

    /* --- facets: phrases after which the user's goal is stated --- */
    {"i want to", RG_GOAL, 0, 1}, {"i would like to", RG_GOAL, 0, 1}, {"i'd like to", RG_GOAL, 0, 1},
    {"i need to", RG_GOAL, 0, 1}, {"trying to", RG_GOAL, 0, 1}, {"how do i", RG_GOAL, 0, 1},
    {"how can i", RG_GOAL, 0, 1}, {"is there a way to", RG_GOAL, 0, 1}, {"i wish i could", RG_GOAL, 0, 1},
    {"would love to", RG_GOAL, 0, 1}, {"please add", RG_GOAL, 0, 1}, {"can you add", RG_GOAL, 0, 1},
    {"where do i", RG_GOAL, 0, 1}, {"i am trying to", RG_GOAL, 0, 1}, {"want to be able to", RG_GOAL, 0, 1},
    {"if you could", RG_GOAL, 0, 1}, {"could you", RG_GOAL, 0, 1}, {"can you", RG_GOAL, 0, 1},
    {"i'd love to", RG_GOAL, 0, 1}, {"need to be able to", RG_GOAL, 0, 1}, {"how to", RG_GOAL, 0, 1},
};

#define NRULES (sizeof RULES / sizeof RULES[0])

/* Vocabulary names the refiner looks for in support replies. */
typedef struct mention {
    const char *name; /* as written in the vocabulary (borrowed) */
    int feature;      /* 0: product area / display area, 1: component */
} mention;

struct lrules {
    lphrases set;        /* RULES, tag = rule index */
    lphrases names;      /* vocabulary names, tag = mention index */
    mention *mentions;
    size_t nmentions;
    uint32_t *first_hit; /* scratch: per rule, first matched sequence index or UINT32_MAX */
    uint8_t *name_hit;   /* scratch: per mention */
};

/* Components that say nothing about a product (skipped as "features mentioned"). */
static int generic_component(const char *norm) {
    static const char *const g[] = {"unknown", "general", "other", "misc", "ui", "api",
                                    "settings", "features", "education", "support", NULL};
    for (size_t i = 0; g[i]; i++)
        if (strcmp(norm, g[i]) == 0) return 1;
    return 0;
}

static void add_mention(lrules *r, const llex *lx, const char *name, int feature) {
    if (!name || !*name) return;
    for (size_t i = 0; i < r->nmentions; i++)
        if (strcmp(r->mentions[i].name, name) == 0) return;
    char *norm = signature_normalize(name);
    int skip = generic_component(norm) || signature_is_blocked(norm);
    for (char *p = norm; *p; p++)
        if (*p == '_') *p = ' ';
    if (!skip && lp_add(&r->names, lx, norm, (int32_t)r->nmentions) >= 0) {
        r->mentions = xrealloc(r->mentions, (r->nmentions + 1) * sizeof *r->mentions);
        r->mentions[r->nmentions++] = (mention){name, feature};
    }
    free(norm);
}

lrules *lrules_new(const llex *lx, const vocab *v) {
    lrules *r = xcalloc(1, sizeof *r);
    lp_init(&r->set, 0, 0);
    for (size_t i = 0; i < NRULES; i++) lp_add(&r->set, lx, RULES[i].phrase, (int32_t)i);
    lp_compile(&r->set);
    lp_init(&r->names, 1, 0);
    if (v) {
        for (size_t i = 0; i < v->nareas; i++) add_mention(r, lx, v->areas[i].display, 0);
        for (size_t i = 0; i < v->nthemes; i++)
            if (v->themes[i].active) add_mention(r, lx, v->themes[i].product_area, 0);
        for (size_t i = 0; i < v->nthemes; i++)
            if (v->themes[i].active) add_mention(r, lx, v->themes[i].component, 1);
    }
    lp_compile(&r->names);
    r->first_hit = xmalloc(NRULES * sizeof *r->first_hit);
    r->name_hit = xcalloc(r->nmentions + 1, 1);
    return r;
}

void lrules_free(lrules *r) {
    if (!r) return;
    lp_free(&r->set);
    lp_free(&r->names);
    free(r->mentions);
    free(r->first_hit);
    free(r->name_hit);
    free(r);
}

/* ------------------------------------------------------------ matching */

static void record_hit(void *ctx, size_t phrase, size_t first, size_t last, size_t gaps) {
    (void)last;
    (void)gaps;
    lrules *r = ctx;
    uint32_t rule = (uint32_t)r->set.tag[phrase];
    if (r->first_hit[rule] == UINT32_MAX) r->first_hit[rule] = (uint32_t)first;
}

/* Tokenises text into c->tk and records each rule's first hit (sequence index). */
static void match_rules(local_ctx *c, const char *text, size_t len) {
    lrules *r = c->rules;
    lt_clear(&c->tk);
    lt_tokenize(&c->tk, text, len);
    lp_map(&r->set, &c->lex, &c->tk, &c->seq);
    for (size_t i = 0; i < NRULES; i++) r->first_hit[i] = UINT32_MAX;
    lp_match(&r->set, &c->seq, 0, record_hit, r);
}

static int hit(const lrules *r, size_t rule) { return r->first_hit[rule] != UINT32_MAX; }

/* Adds the weights of the hit rules of one group into score[value]. */
static void score_group(const lrules *r, int group, float *score, size_t nvalues) {
    for (size_t i = 0; i < NRULES; i++)
        if (RULES[i].group == group && hit(r, i) && RULES[i].value < nvalues)
            score[RULES[i].value] += RULES[i].weight;
}

/* Best value by score, ties broken by prio order; *second = runner-up score. */
static int pick_best(const float *score, const int *prio, size_t n, float *second) {
    int best = prio[0];
    for (size_t k = 1; k < n; k++)
        if (score[prio[k]] > score[best]) best = prio[k];
    float s2 = 0;
    for (size_t k = 0; k < n; k++)
        if (prio[k] != best && score[prio[k]] > s2) s2 = score[prio[k]];
    *second = s2;
    return best;
}

/* Appends up to max distinct matched phrases of a group (optionally one value). */
static void add_signals(const lrules *r, int group, int value, json_t *arr, size_t max) {
    for (size_t i = 0; i < NRULES && json_array_size(arr) < max; i++) {
        if (RULES[i].group != group || !hit(r, i)) continue;
        if (value >= 0 && RULES[i].value != value) continue;
        int dup = 0;
        for (size_t k = 0; k < json_array_size(arr) && !dup; k++)
            dup = strcmp(json_string_value(json_array_get(arr, k)), RULES[i].phrase) == 0;
        if (!dup) json_array_append_new(arr, json_string(RULES[i].phrase));
    }
}

static const char *confidence_of(float best, float second) {
    float margin = best - second;
    if (best >= 4 && margin >= 2) return "high";
    if (best >= 2 && margin >= 1) return "medium";
    return "low";
}

/* Input texts are bounded so one pathological conversation cannot stall the loop. */
#define RULE_TEXT_MAX 12000

static size_t bounded(const buf_t *b) { return utf8_cut(buf_cstr(b), b->len, RULE_TEXT_MAX); }

/* ------------------------------------------------------------ classify */

static int ci_has(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        while (j < k) {
            char ch = hay[i + j];
            if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
            if (ch != needle[j]) break;
            j++;
        }
        if (j == k) return 1;
    }
    return 0;
}

/* "Can I ...?": a question sentence asking permission/possibility. */
static int can_i_question(const char *text, size_t len) {
    lspan sp[256];
    size_t n = lt_sentences(text, len, sp, 256);
    for (size_t i = 0; i < n; i++) {
        const char *s = text + sp[i].a;
        size_t sl = sp[i].b - sp[i].a;
        if (sl == 0 || s[sl - 1] != '?') continue;
        if (ci_has(s, sl, "can i ") || ci_has(s, sl, "could i ") || ci_has(s, sl, "may i "))
            return 1;
    }
    return 0;
}

static size_t count_links(const char *text, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i + 4 <= len; i++)
        n += strncmp(text + i, "http://", 7) == 0 || strncmp(text + i, "https://", 8) == 0 ||
             strncmp(text + i, "www.", 4) == 0;
    return n;
}

/* "all my pins are gone", "all of my drafts disappeared": everything lost. */
static int all_my_gone(const ltokens *tk) {
    static const char *const lost[] = {"gone", "disappeared", "deleted", "lost", "vanished",
                                       "wiped", "erased", "missing", NULL};
    for (size_t i = 0; i + 1 < tk->n; i++) {
        if (strcmp(lt_word(tk, i), "all") != 0) continue;
        size_t j = i + 1;
        if (strcmp(lt_word(tk, j), "of") == 0) j++;
        if (j >= tk->n || (strcmp(lt_word(tk, j), "my") != 0 && strcmp(lt_word(tk, j), "our") != 0))
            continue;
        for (size_t k = j + 1; k < tk->n && k <= j + 6; k++)
            for (size_t l = 0; lost[l]; l++)
                if (strcmp(lt_word(tk, k), lost[l]) == 0) return 1;
    }
    return 0;
}

typedef struct classification {
    int type;
    float best, second;
    float score[CT_COUNT];
    int can_i, links, gone;
} classification;

static void classify_text(local_ctx *c, const char *text, size_t len, classification *out) {
    memset(out, 0, sizeof *out);
    match_rules(c, text, len);
    score_group(c->rules, RG_TYPE, out->score, CT_COUNT);
    out->can_i = can_i_question(text, len);
    if (out->can_i) out->score[CT_HOWTO] += 2.5f;
    size_t links = count_links(text, len);
    out->links = (int)links;
    if (links >= 3) out->score[CT_SPAM] += 3;
    out->gone = all_my_gone(&c->tk);
    if (out->gone) out->score[CT_PRODUCT] += 2.5f;
    /* general_inquiry has no rules of its own: it is what is left when no other type
     * reaches a minimal signal (it is last in the tie order, with score 0) */
    out->type = pick_best(out->score, TYPE_PRIORITY, CT_COUNT, &out->second);
    out->best = out->score[out->type];
    if (out->best < 1.5f) {
        out->second = out->best;
        out->type = CT_GENERAL;
        out->best = 0;
    }
}

static const char *urgency_of(const lrules *r, const classification *k) {
    if (k->type == CT_SPAM) return "low";
    float crit = 0, high = 0;
    score_group(r, RG_URG_CRIT, &crit, 1);
    score_group(r, RG_URG_HIGH, &high, 1);
    if (crit > 0 || k->gone) return "critical";
    int problem = k->type == CT_PRODUCT || k->type == CT_ACCOUNT || k->type == CT_BILLING ||
                  k->type == CT_CONFIG;
    if (high > 0 && problem) return "high";
    if (k->type == CT_HOWTO || k->type == CT_FEATURE || k->type == CT_GENERAL) return "low";
    return "normal";
}

json_t *local_classify(local_ctx *c, const llm_call *call, char *err, size_t errlen) {
    buf_t *t = &c->text;
    buf_reset(t);
    if (call->in.subject && *call->in.subject) {
        buf_puts(t, call->in.subject);
        buf_puts(t, "\n\n");
    }
    lt_opening_text(&call->in, t);
    if (t->len == 0) {
        snprintf(err, errlen, "empty conversation text");
        return NULL;
    }
    classification k;
    classify_text(c, buf_cstr(t), bounded(t), &k);
    json_t *signals = json_array();
    add_signals(c->rules, RG_TYPE, k.type, signals, 5);
    if (k.can_i && json_array_size(signals) < 5) json_array_append_new(signals, json_string("can i ...?"));
    if (k.gone && k.type == CT_PRODUCT && json_array_size(signals) < 5)
        json_array_append_new(signals, json_string("all my ... gone"));
    if (k.links >= 3 && k.type == CT_SPAM && json_array_size(signals) < 5)
        json_array_append_new(signals, json_string("many links"));
    const char *type = LLM_CONVERSATION_TYPES[k.type];
    const char *conf = k.type == CT_GENERAL ? (k.second > 0 ? "low" : "medium")
                                            : confidence_of(k.best, k.second);
    buf_t why = BUF_INIT;
    if (k.type == CT_GENERAL && k.second == 0) {
        buf_puts(&why, "No product, billing, account or request signals; general inquiry.");
    } else if (k.type == CT_GENERAL) {
        buf_printf(&why, "Only weak signals (best %.1f); treated as a general inquiry.", k.second);
    } else {
        buf_printf(&why, "Classified as %s from signals: ", type);
        for (size_t i = 0; i < json_array_size(signals); i++)
            buf_printf(&why, "%s\"%s\"", i ? ", " : "", json_string_value(json_array_get(signals, i)));
        buf_printf(&why, " (score %.1f vs %.1f).", k.best, k.second);
    }
    json_t *ans = json_pack("{s:s, s:s, s:s, s:s, s:o}", "conversation_type", type, "confidence",
                            conf, "urgency", urgency_of(c->rules, &k), "reasoning", buf_cstr(&why),
                            "key_signals", signals);
    buf_free(&why);
    return ans;
}

/* ------------------------------------------------------------ refine */

static void record_name(void *ctx, size_t phrase, size_t first, size_t last, size_t gaps) {
    (void)first;
    (void)last;
    (void)gaps;
    lrules *r = ctx;
    r->name_hit[r->names.tag[phrase]] = 1;
}

/* Vocabulary product areas / components named in the support text. */
static void mentioned_names(local_ctx *c, const char *text, size_t len, json_t *products,
                            json_t *features) {
    lrules *r = c->rules;
    if (!r->nmentions) return;
    lt_clear(&c->tk);
    lt_tokenize(&c->tk, text, len);
    lp_map(&r->names, &c->lex, &c->tk, &c->seq);
    memset(r->name_hit, 0, r->nmentions);
    lp_match(&r->names, &c->seq, 0, record_name, r);
    for (size_t i = 0; i < r->nmentions; i++) {
        if (!r->name_hit[i]) continue;
        json_t *to = r->mentions[i].feature ? features : products;
        if (json_array_size(to) < 5) json_array_append_new(to, jx_string(r->mentions[i].name));
    }
}

/* The first support sentence that states a cause, cut to 200 bytes; "" if none. */
static char *root_cause_sentence(const lrules *r, const ltokens *tk, const lpseq *q,
                                 const char *text, size_t len) {
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < NRULES; i++)
        if (RULES[i].group == RG_SUPPORT && RULES[i].value == SC_CAUSE && hit(r, i) &&
            r->first_hit[i] < best)
            best = r->first_hit[i];
    if (best == SIZE_MAX) return xstrdup("");
    size_t off = tk->t[q->tok[best]].src;
    lspan sp[512];
    size_t n = lt_sentences(text, len, sp, 512);
    long s = lt_span_of(sp, n, off);
    if (s < 0) return xstrdup("");
    return lt_cut_ellipsis(text + sp[s].a, sp[s].b - sp[s].a, 200, "...");
}

/* The stage-1 type a refinement starts from: the caller's, else our own reading. */
static int stage1_of(local_ctx *c, const llm_call *call) {
    int stage1 = llm_set_index(LLM_CONVERSATION_TYPES, jx_str(call->args, "stage1_type"));
    if (stage1 >= 0) return stage1;
    buf_reset(&c->text);
    lt_opening_text(&call->in, &c->text);
    if (c->text.len == 0) return -1;
    classification k;
    classify_text(c, buf_cstr(&c->text), bounded(&c->text), &k);
    return k.type;
}

typedef struct refinement {
    int type;
    float best;          /* strength of the winning support signal */
    const char *because; /* "" when support said nothing decisive */
} refinement;

/* Support can move a conversation between the product-facing types; billing,
 * account and spam stay what they are (guidance there is not a product story). */
static refinement decide_refinement(int stage1, const float *sc) {
    refinement r = {stage1, 0, ""};
    if (stage1 == CT_BILLING || stage1 == CT_ACCOUNT || stage1 == CT_SPAM) return r;
    const float cand[3] = {sc[SC_BUG], sc[SC_FEATURE], sc[SC_HOWTO]};
    const int types[3] = {CT_PRODUCT, CT_FEATURE, CT_HOWTO}; /* tie order */
    int bi = 0;
    for (int i = 1; i < 3; i++)
        if (cand[i] > cand[bi]) bi = i;
    int to = types[bi];
    /* A product issue answered with "you can try ... clear your cache" is still a
     * product issue: steps alone must be strong and not a workaround. */
    int howto_over_bug = to == CT_HOWTO && stage1 == CT_PRODUCT &&
                         (cand[bi] < 4 || sc[SC_BUG] > 0 || sc[SC_WORKAROUND] >= 2);
    if (cand[bi] < 2 || howto_over_bug) return r;
    r.type = to;
    r.best = cand[bi];
    r.because = to == CT_PRODUCT   ? "support confirmed a bug or escalated it"
                : to == CT_FEATURE ? "support logged it as a feature request"
                                   : "support explained how to do it";
    return r;
}

static const char *solution_type_of(const float *sc) {
    if (sc[SC_MANUAL] >= 2.5f) return "manual_intervention";
    if (sc[SC_BUG] >= 3) return "escalated_to_engineering";
    if (sc[SC_WORKAROUND] >= 2) return "provided_workaround";
    if (sc[SC_HOWTO] >= 2) return "user_education";
    return "no_resolution";
}

static char *refine_reasoning(int stage1, const refinement *r, int have_support) {
    const char *from = LLM_CONVERSATION_TYPES[stage1], *to = LLM_CONVERSATION_TYPES[r->type];
    if (!have_support) return xasprintf("No support reply to learn from; kept %s.", from);
    if (r->type != stage1) return xasprintf("Changed from %s to %s: %s.", from, to, r->because);
    if (*r->because) return xasprintf("Kept %s: %s.", to, r->because);
    return xasprintf("Support reply does not change the reading; kept %s.", to);
}

json_t *local_refine(local_ctx *c, const llm_call *call, char *err, size_t errlen) {
    int stage1 = stage1_of(c, call);
    if (stage1 < 0) {
        snprintf(err, errlen, "no stage1_type and empty conversation text");
        return NULL;
    }
    buf_t *sup = &c->text2;
    buf_reset(sup);
    lt_support_text(&call->in, sup);
    float sc[SC_COUNT] = {0};
    char *cause = NULL;
    json_t *products = json_array(), *features = json_array();
    if (sup->len) {
        size_t len = bounded(sup);
        match_rules(c, buf_cstr(sup), len);
        score_group(c->rules, RG_SUPPORT, sc, SC_COUNT);
        cause = root_cause_sentence(c->rules, &c->tk, &c->seq, buf_cstr(sup), len);
        mentioned_names(c, buf_cstr(sup), len, products, features);
    }
    refinement r = decide_refinement(stage1, sc);
    float evidence = sc[SC_BUG] + sc[SC_FEATURE] + sc[SC_HOWTO];
    /* level: a change is high, a confirmation medium, stray signals low */
    const char *conf = "low", *level = "none";
    if (*r.because) {
        conf = r.best >= 4 ? "high" : "medium";
        level = r.type != stage1 ? "high" : "medium";
    } else if (evidence > 0) {
        conf = "medium";
        level = "low";
    }
    char *why = refine_reasoning(stage1, &r, sup->len > 0);
    json_t *insights = json_pack("{s:b, s:o, s:s, s:o, s:o}", "issue_confirmed", sc[SC_BUG] >= 2.5f,
                                 "root_cause", jx_string(cause ? cause : ""), "solution_type",
                                 solution_type_of(sc), "products_mentioned", products,
                                 "features_mentioned", features);
    json_t *ans = json_pack("{s:s, s:s, s:o, s:s, s:o}", "conversation_type",
                            LLM_CONVERSATION_TYPES[r.type], "confidence", conf, "reasoning",
                            jx_string(why), "disambiguation_level", level, "support_insights",
                            insights);
    free(why);
    free(cause);
    return ans;
}

/* ------------------------------------------------------------ facets */

#define FACET_WORDS 10
#define FACET_BYTES 200

/* Removes trailing sentence punctuation in place. */
static void strip_end_punct(char *s) {
    size_t n = strlen(s);
    while (n > 0 && strchr(".!?,;: ", s[n - 1])) s[--n] = '\0';
}

/* Up to 10 words of the sentence around source offset off, starting a few words
 * before it so the subject of the symptom is kept. */
static char *words_around(const char *text, size_t len, size_t off) {
    lspan sp[512];
    size_t n = lt_sentences(text, len, sp, 512);
    long s = lt_span_of(sp, n, off);
    if (s < 0) return lt_cut_words(text + off, len - off, FACET_WORDS, FACET_BYTES);
    size_t a = sp[s].a, b = sp[s].b;
    /* word index of off within the sentence */
    size_t words_before = 0;
    for (size_t i = a; i < off && i < b; i++)
        if ((text[i] == ' ') && i + 1 < b && text[i + 1] != ' ') words_before++;
    size_t skip = words_before > 4 ? words_before - 4 : 0;
    size_t i = a;
    while (skip > 0 && i < b) {
        if (text[i] == ' ' && i + 1 < b && text[i + 1] != ' ') skip--;
        i++;
    }
    /* the clause ends at the next comma/semicolon after the symptom word */
    size_t e = off;
    while (e < b && text[e] != ',' && text[e] != ';') e++;
    char *w = lt_cut_words(text + i, e - i, FACET_WORDS, FACET_BYTES);
    strip_end_punct(w);
    return w;
}

/* The earliest hit of rules in (group, values mask) with the highest weight. */
static long strongest_hit(const lrules *r, int group, unsigned mask) {
    long best = -1;
    for (size_t i = 0; i < NRULES; i++) {
        if (RULES[i].group != group || !hit(r, i) || !(mask & (1u << RULES[i].value))) continue;
        if (best < 0 || RULES[i].weight > RULES[best].weight ||
            (RULES[i].weight == RULES[best].weight && r->first_hit[i] < r->first_hit[best]))
            best = (long)i;
    }
    return best;
}

/* Start of sentence [a, b) after a leading greeting ("Hello, ", "Hi team, ",
 * "Hey Anna, "): a greeting word first and a comma within the first four words. */
static size_t skip_greeting(const char *s, size_t a, size_t b) {
    static const char *const greet[] = {"hi", "hello", "hey", "dear", "greetings", "good",
                                        "howdy", "hiya", NULL};
    size_t w = a;
    while (w < b && ((s[w] >= 'a' && s[w] <= 'z') || (s[w] >= 'A' && s[w] <= 'Z'))) w++;
    int greeting = 0;
    for (size_t i = 0; greet[i] && !greeting; i++)
        greeting = strlen(greet[i]) == w - a && strncasecmp(s + a, greet[i], w - a) == 0;
    if (!greeting) return a;
    size_t words = 1;
    for (size_t i = w; i < b && words <= 4; i++) {
        if (s[i] == ',') {
            i++;
            while (i < b && s[i] == ' ') i++;
            return i < b ? i : a;
        }
        if (s[i] == ' ' && i + 1 < b && s[i + 1] != ' ') words++;
    }
    return a;
}

char *local_user_intent(local_ctx *c, const char *text, size_t max_bytes) {
    lspan sp[512];
    size_t len = strlen(text);
    size_t n = lt_sentences(text, len, sp, 512);
    ltokens tk = {0};
    char *out = NULL;
    for (size_t i = 0; i < n && !out; i++) {
        size_t a = skip_greeting(text, sp[i].a, sp[i].b);
        lt_clear(&tk);
        lt_tokenize(&tk, text + a, sp[i].b - a);
        if (sp[i].b - a >= 12 && lt_content_words(&c->lex, &tk, 0, tk.n) >= 2)
            out = lt_cut_ellipsis(text + a, sp[i].b - a, max_bytes, "...");
    }
    lt_free(&tk);
    if (!out) out = lt_cut_ellipsis(text, len, max_bytes, "...");
    return out;
}

/* The words after the first goal phrase, to the end of its sentence. */
static char *goal_after_phrase(local_ctx *c, const char *text, size_t len) {
    const lrules *r = c->rules;
    long best = -1;
    for (size_t i = 0; i < NRULES; i++)
        if (RULES[i].group == RG_GOAL && hit(r, i) &&
            (best < 0 || r->first_hit[i] < r->first_hit[best]))
            best = (long)i;
    if (best < 0) return NULL;
    /* the phrase's last token: first hit + phrase length - 1 */
    ltokens ph = {0};
    lt_tokenize(&ph, RULES[best].phrase, strlen(RULES[best].phrase));
    size_t last = r->first_hit[best] + (ph.n ? ph.n - 1 : 0);
    lt_free(&ph);
    if (last >= c->seq.n) return NULL;
    size_t end_off = c->tk.t[c->seq.tok[last]].src_end;
    size_t stop = end_off;
    while (stop < len && !strchr("\n.?!,;", text[stop])) stop++;
    char *g = lt_cut_words(text + end_off, stop - end_off, FACET_WORDS, FACET_BYTES);
    strip_end_punct(g);
    if (!strchr(g, ' ')) { /* one word is not a goal */
        free(g);
        return NULL;
    }
    return g;
}

static char *first_question(const char *text, size_t len) {
    lspan sp[512];
    size_t n = lt_sentences(text, len, sp, 512);
    for (size_t i = 0; i < n; i++)
        if (text[sp[i].b - 1] == '?') {
            char *q = lt_cut_words(text + sp[i].a, sp[i].b - sp[i].a, FACET_WORDS, FACET_BYTES);
            strip_end_punct(q);
            return q;
        }
    return NULL;
}

/* The symptom: around the strongest problem phrase (a problem direction first, then
 * bug words; creation/modification/deletion words are goals, not symptoms), else the
 * first meaningful sentence. Uses the rule hits of the last match_rules(text). */
static char *facet_symptom(local_ctx *c, const char *text, size_t len, int direction) {
    const lrules *r = c->rules;
    char *symptom = NULL;
    long h = -1;
    if (direction == DR_EXCESS || direction == DR_DEFICIT || direction == DR_PERFORMANCE)
        h = strongest_hit(r, RG_DIR, 1u << direction);
    if (h < 0) h = strongest_hit(r, RG_ACTION, 1u << AT_BUG);
    if (h >= 0 && r->first_hit[h] < c->seq.n)
        symptom = words_around(text, len, c->tk.t[c->seq.tok[r->first_hit[h]]].src);
    if (symptom && *symptom) return symptom;
    free(symptom);
    char *intent = local_user_intent(c, text, FACET_BYTES);
    symptom = lt_cut_words(intent, strlen(intent), FACET_WORDS, FACET_BYTES);
    strip_end_punct(symptom);
    free(intent);
    return symptom;
}

/* The goal: what follows "I want to"/"how do I"..., else the question asked, else
 * "fix: <symptom>" for problems, else the request itself. */
static char *facet_goal(local_ctx *c, const char *text, size_t len, int action, int direction,
                        const char *symptom) {
    char *goal = goal_after_phrase(c, text, len);
    if (!goal && (action == AT_HOWTO || action == AT_FEATURE || action == AT_INQUIRY))
        goal = first_question(text, len);
    if (!goal && (action == AT_BUG || action == AT_COMPLAINT || direction != DR_NEUTRAL)) {
        char *g = xasprintf("fix: %s", symptom);
        goal = lt_cut_words(g, strlen(g), FACET_WORDS, FACET_BYTES);
        free(g);
    }
    return goal ? goal : xstrdup(symptom);
}

json_t *local_facets(local_ctx *c, const llm_call *call, char *err, size_t errlen) {
    buf_t *t = &c->text;
    buf_reset(t);
    lt_opening_text(&call->in, t);
    if (t->len == 0) {
        snprintf(err, errlen, "empty conversation text");
        return NULL;
    }
    const char *text = buf_cstr(t);
    size_t len = bounded(t);
    match_rules(c, text, len);
    float as[AT_COUNT] = {0}, ds[DR_COUNT] = {0}, second;
    score_group(c->rules, RG_ACTION, as, AT_COUNT);
    if (memchr(text, '?', len)) as[AT_INQUIRY] += 1;
    if (can_i_question(text, len)) as[AT_HOWTO] += 2.5f;
    int action = pick_best(as, ACTION_PRIORITY, AT_COUNT, &second);
    if (as[action] < 1) action = AT_UNKNOWN;
    score_group(c->rules, RG_DIR, ds, DR_COUNT);
    int direction = pick_best(ds, DIR_PRIORITY, DR_COUNT, &second);
    if (ds[direction] < 1.5f) direction = DR_NEUTRAL;
    char *symptom = facet_symptom(c, text, len, direction);
    char *goal = facet_goal(c, text, len, action, direction, symptom);
    json_t *ans = json_pack("{s:s, s:s, s:o, s:o}", "action_type", LLM_ACTION_TYPES[action],
                            "direction", LLM_DIRECTIONS[direction], "symptom", jx_string(symptom),
                            "user_goal", jx_string(goal));
    free(symptom);
    free(goal);
    return ans;
}

/* ------------------------------------------------------------ symptoms */

size_t local_symptoms(local_ctx *c, const char *text, size_t len, lsymptom *out, size_t max) {
    if (len > RULE_TEXT_MAX) len = utf8_cut(text, len, RULE_TEXT_MAX);
    match_rules(c, text, len);
    const lrules *r = c->rules;
    const unsigned dir_mask = 1u << DR_EXCESS | 1u << DR_DEFICIT | 1u << DR_PERFORMANCE;
    size_t n = 0;
    for (size_t i = 0; i < NRULES && n < max; i++) {
        if (!hit(r, i)) continue;
        int problem = (RULES[i].group == RG_DIR && (dir_mask & (1u << RULES[i].value))) ||
                      (RULES[i].group == RG_ACTION && RULES[i].value == AT_BUG);
        if (!problem) continue;
        int dup = 0;
        for (size_t k = 0; k < n && !dup; k++) dup = strcmp(out[k].phrase, RULES[i].phrase) == 0;
        if (dup) continue;
        const ltok *t = &c->tk.t[c->seq.tok[r->first_hit[i]]];
        out[n++] = (lsymptom){RULES[i].phrase, t->src, t->src_end, RULES[i].weight};
    }
    /* in order of appearance; equal positions: heavier first */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && (out[j].src < out[j - 1].src ||
                                     (out[j].src == out[j - 1].src && out[j].weight > out[j - 1].weight));
             j--) {
            lsymptom tmp = out[j];
            out[j] = out[j - 1];
            out[j - 1] = tmp;
        }
    return n;
}
