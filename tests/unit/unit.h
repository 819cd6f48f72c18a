/* unit.h - a tiny test harness. Each tests/unit/test_*.c file is one
 * process (ctest runs each with a timeout). A failed check prints file:line,
 * the expression and the values, and the test function returns at once.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_INT(a, b); }
 *   int main(void) { RUN(name); return unit_done(); }
 */
#ifndef WARDEN_TESTS_UNIT_H
#define WARDEN_TESTS_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_failed_total;
static int unit_failed_current;

#define TEST(name) static void test_##name(void)

#define RUN(name)                                                  \
    do {                                                           \
        unit_failed_current = 0;                                   \
        test_##name();                                             \
        fprintf(stderr, "%s %s\n", unit_failed_current ? "FAIL" : "ok  ", #name); \
        unit_failed_total += unit_failed_current;                  \
    } while (0)

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                 \
            unit_failed_current = 1;                                        \
            return;                                                         \
        }                                                                   \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                  \
    do {                                                                    \
        long long a_ = (long long)(a), b_ = (long long)(b);                 \
        if (a_ != b_) {                                                     \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",       \
                    __FILE__, __LINE__, #a, #b, a_, b_);                    \
            unit_failed_current = 1;                                        \
            return;                                                         \
        }                                                                   \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                  \
    do {                                                                    \
        const char *a_ = (a), *b_ = (b);                                    \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {              \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n",   \
                    __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",         \
                    b_ ? b_ : "(null)");                                    \
            unit_failed_current = 1;                                        \
            return;                                                         \
        }                                                                   \
    } while (0)

static inline int unit_done(void)
{
    if (unit_failed_total) {
        fprintf(stderr, "%d test(s) FAILED\n", unit_failed_total);
        return 1;
    }
    return 0;
}

#endif
