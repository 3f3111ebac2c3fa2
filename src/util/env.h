/* Settings from the environment. */
#ifndef FEEDLINE_ENV_H
#define FEEDLINE_ENV_H

/* A positive whole number from the environment variable name (1..max), or dflt when it
 * is unset or empty (with a warning when it is set to something else). */
long env_count(const char *name, long max, long dflt);

#endif
