/* Allocation policy: like Redis' zmalloc, an allocation failure is not a
 * recoverable condition for feedline (every structure is bounded, so running out
 * means the machine is out), so these wrappers print a message and abort instead
 * of returning NULL. Callers therefore never check them; everything else is checked. */
#ifndef FEEDLINE_MEM_H
#define FEEDLINE_MEM_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);           /* NULL in, NULL out */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same with a va_list (consumed). */
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Grow *arr (element size esz) so that it holds at least need elements. */
void xgrow(void **arr, size_t *cap, size_t need, size_t esz);
#define XGROW(arr, cap, need) xgrow((void **)&(arr), &(cap), (need), sizeof(*(arr)))

#endif
