/* html_to_text on arbitrary bytes (message bodies are HTML from Intercom or anything
 * from a JSONL file), then what ingest does with the text: the specificity score and
 * the customer digest. Properties (text.h): the output is valid UTF-8 whatever the
 * input, and the digest holds at most its character budget. */
#include "fuzz.h"
#include "text/text.h"
#include "util/utf8.h"

FUZZ_QUIET_INIT

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 256 * 1024) return -1;
    char *in = fuzz_cstr(data, size);
    char *out = html_to_text(in);
    FUZZ_CHECK(out != NULL);
    size_t n = strlen(out);
    FUZZ_CHECK(utf8_valid(out, n));
    (void)message_specificity(out);
    const char *msgs[2] = {out, in};
    char *digest = build_customer_digest(out, msgs, 1, 300);
    FUZZ_CHECK(digest && utf8_count(digest, strlen(digest)) <= 300);
    free(digest);
    free(out);
    free(in);
    return 0;
}
