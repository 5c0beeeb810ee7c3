/*
 * criterion.h - the few Criterion macros tests/test_simd.c uses, so that the suite
 * also builds where Criterion is not installed: for aarch64, whose libcriterion-dev
 * cannot be installed beside the amd64 one the native suites need (.ci/neon).
 *
 * Tests run one after the other in this process, in the order they were defined; a
 * failed assertion or a skip ends the test.  The last line says how many passed.
 */
#ifndef ADAMAS_CRITERION_SHIM_H
#define ADAMAS_CRITERION_SHIM_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct shim_test {
    const char *suite, *name;
    void (*run)(void);
    struct shim_test *next;
};

/* Shared by every file that includes this header (weak: defined once at link). */
__attribute__((weak)) struct shim_test *shim_first, *shim_last;
__attribute__((weak)) jmp_buf shim_jump;

static inline void shim_register(struct shim_test *t)
{
    if (shim_last)
        shim_last->next = t;
    else
        shim_first = t;
    shim_last = t;
}

#define Test(suite, name, ...)                                                         \
    static void suite##_##name(void);                                                  \
    __attribute__((constructor)) static void suite##_##name##_register(void)           \
    {                                                                                  \
        static struct shim_test t = {#suite, #name, suite##_##name, NULL};             \
        shim_register(&t);                                                             \
    }                                                                                  \
    static void suite##_##name(void)

static inline void shim_end(int how, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (how == 1)
        fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   ", file, line);
    else
        fprintf(stderr, "[SKIP] ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    longjmp(shim_jump, how);
}

static inline void shim_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("[----] ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

#define cr_assert(cond, ...)                                   \
    do {                                                       \
        if (!(cond))                                           \
            shim_end(1, __FILE__, __LINE__, "" __VA_ARGS__);   \
    } while (0)
#define cr_skip_test(...) shim_end(2, __FILE__, __LINE__, "" __VA_ARGS__)
#define cr_log_info(...) shim_log(__VA_ARGS__)
#define cr_log_warn(...) shim_log(__VA_ARGS__)

__attribute__((weak)) int main(void)
{
    volatile int passed = 0, failed = 0, skipped = 0;
    for (struct shim_test *volatile t = shim_first; t; t = t->next) {
        int how = setjmp(shim_jump);
        if (how == 0) {
            t->run();
            printf("[PASS] %s::%s\n", t->suite, t->name);
            passed++;
        } else if (how == 1) {
            printf("[FAIL] %s::%s\n", t->suite, t->name);
            failed++;
        } else {
            printf("[SKIP] %s::%s\n", t->suite, t->name);
            skipped++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}

#endif
