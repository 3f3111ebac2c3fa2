/* text — turning raw conversation text into what the pipeline reads: HTML to plain
 * text (tags removed, every HTML entity decoded, numeric ones too), the message
 * specificity score, the customer digest and full transcript (original-phases.md §0),
 * the quality filter, signature/component/area normalisation, and the theme
 * vocabulary (loading any file shaped like data/theme_vocabulary.json).
 *
 * Owns: pure functions over strings and the in-memory vocabulary. Must not touch the
 * store, the network or any global mutable state; everything here is thread-safe. */
#ifndef FEEDLINE_TEXT_H
#define FEEDLINE_TEXT_H

#include <stddef.h>

#include "text/conv.h"
#include "text/signature.h"
#include "text/vocab.h"

/* HTML to plain text: tags become a space (block-level tags too), comments and
 * <script>/<style> contents are dropped, all HTML5 named entities of the HTML 4 set
 * plus &apos; and every numeric entity (&#39; &#x27;) are decoded exactly once
 * (so "&amp;lt;" becomes "&lt;", not "<"), runs of whitespace collapse to one space,
 * the result is trimmed and is valid UTF-8 (invalid input bytes become U+FFFD,
 * NUL bytes are dropped). NULL in -> "". Caller frees. */
char *html_to_text(const char *html);

/* Specificity score of one (already stripped) customer message; see
 * original-phases.md §0 for the rules (empty -> -2). */
int message_specificity(const char *msg);

/* 1 when the two texts are "similar" per original-phases.md §0. */
int messages_similar(const char *a, const char *b);

/* The words of s[0..len): runs of characters other than ASCII whitespace. */
size_t text_word_count(const char *s, size_t len);

/* Lower-cased, with every run of ASCII non-alphanumerics as one space and none at
 * either end, for comparing texts ("Can't sync!" -> "can t sync"). Caller frees. */
char *text_fold(const char *s);

/* 1 when two customer texts say the same thing, for showing each once: on their
 * text_fold()ed forms, messages_similar (one contains the other, or nearly the same
 * words), or the same last words for at least 80% of the shorter text, at least 4 of
 * them, so that a greeting or a lead-in makes no difference ("Hey quick one - can I
 * add accounts from different email addresses?" and "I can't work out how this
 * works: can I add accounts from different email addresses."). Texts that merely end
 * alike ("The app crashes when I try to log in", "I get error 500 when I try to log
 * in") stay apart. Equal texts are the same; a single word is otherwise only the same
 * as the same word ("error" is inside many texts and says nothing about them). NULL
 * is never the same as anything. */
int texts_say_the_same(const char *a, const char *b);

/* The customer digest (<= max_chars characters, not bytes) from the stripped opening
 * message and the stripped customer messages of the thread. Caller frees. */
char *build_customer_digest(const char *source_body, const char *const *customer_msgs,
                            size_t n, size_t max_chars);

/* Cuts s in place to at most max_chars characters on a UTF-8 boundary. */
void text_truncate_chars(char *s, size_t max_chars);
/* Trims ASCII whitespace in place; returns s. */
char *text_trim(char *s);

#endif
