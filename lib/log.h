/*
 * log.h — one-line diagnostics on stderr: "2026-11-21T05:00:00.123Z ninesd[pid] LEVEL message".
 *
 * The program name and minimum level are set once at start-up (log_init),
 * before any thread starts; that is the only process-wide state, and it is
 * written once. Each call emits a whole line with one write(2), so lines from
 * several threads never interleave.
 */
#ifndef NINES_LOG_H
#define NINES_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_QUIET = 4 };

void log_init(const char *program, enum log_level min_level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
