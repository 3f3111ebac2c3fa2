/* Leveled logging to stderr, one line per call, safe from any thread.
 * Level from FEEDLINE_LOG (error|warn|info|debug; default warn for the CLI, which
 * may raise it). Logs never carry conversation text, only ids. */
#ifndef FEEDLINE_LOG_H
#define FEEDLINE_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
void log_init_from_env(enum log_level dflt);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
