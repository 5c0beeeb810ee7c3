/* dispatch.c - the one place that asks the CPU which kernel table to use.
 *
 * Each ISA's table lives in its own file (simd/<isa>.c), compiled with that ISA's
 * flags only; the build defines ADAMAS_HAVE_<ISA> for the tables it compiled. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels.h"

const adamas_kernels adamas_kernels_scalar = {
    .name = "scalar",
    .hadamard = adamas_hadamard_scalar,
    .encode = adamas_encode_scalar,
    .hadamard_encode = adamas_hadamard_encode_scalar,
    .scan = {adamas_scan_l1_scalar, adamas_scan_xorw_scalar},
    .scan_group = {adamas_scan_group_l1_scalar, adamas_scan_group_xorw_scalar},
    .emit = adamas_emit_scalar,
    .dot = {adamas_dot_f32_scalar, adamas_dot_f16_scalar, adamas_dot_bf16_scalar},
    .dot_group = {adamas_dot_group_f32_scalar, adamas_dot_group_f16_scalar,
                  adamas_dot_group_bf16_scalar},
    .axpy = {adamas_axpy_f32_scalar, adamas_axpy_f16_scalar, adamas_axpy_bf16_scalar},
    .axpy_group = {adamas_axpy_group_f32_scalar, adamas_axpy_group_f16_scalar,
                   adamas_axpy_group_bf16_scalar},
    .scale_max = adamas_scale_max_scalar,
    .exp_sum = adamas_exp_sum_scalar,
    .page_score = adamas_page_score_scalar,
    .dot_q8_0 = adamas_dot_q8_0_scalar,
    .widen_q8_0 = adamas_widen_q8_0_scalar,
};

#ifdef ADAMAS_HAVE_AVX512
extern const adamas_kernels adamas_kernels_avx512;
#endif
#ifdef ADAMAS_HAVE_AVX2
extern const adamas_kernels adamas_kernels_avx2;
#endif
#ifdef ADAMAS_HAVE_NEON
extern const adamas_kernels adamas_kernels_neon;
#endif

#ifdef ADAMAS_HAVE_AVX2
#include <cpuid.h>

/* F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know
 * "f16c".  The OS's saving of the AVX state is checked with "avx2" below. */
static int cpu_has_f16c(void)
{
    unsigned eax, ebx, ecx, edx;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29));
}

static int cpu_has_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c() &&
           __builtin_cpu_supports("popcnt");
}
#endif

#ifdef ADAMAS_HAVE_AVX512
static int cpu_has_avx512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#endif

static int cpu_has_always(void)
{
    return 1;
}

typedef struct {
    const char *name;
    const adamas_kernels *table; /* NULL: not compiled into this build */
    int (*cpu_has)(void);
} isa_entry;

/* Best first: "auto" takes the first entry that is compiled and runs here. */
static const isa_entry isas[] = {
#ifdef ADAMAS_HAVE_AVX512
    {"avx512", &adamas_kernels_avx512, cpu_has_avx512},
#else
    {"avx512", NULL, cpu_has_always},
#endif
#ifdef ADAMAS_HAVE_AVX2
    {"avx2", &adamas_kernels_avx2, cpu_has_avx2},
#else
    {"avx2", NULL, cpu_has_always},
#endif
#ifdef ADAMAS_HAVE_NEON
    {"neon", &adamas_kernels_neon, cpu_has_always},
#else
    {"neon", NULL, cpu_has_always},
#endif
    {"scalar", &adamas_kernels_scalar, cpu_has_always},
};

#define N_ISAS (sizeof isas / sizeof isas[0])

static _Atomic(const adamas_kernels *) current;

static const isa_entry *find_isa(const char *name)
{
    for (size_t i = 0; i < N_ISAS; i++)
        if (strcmp(isas[i].name, name) == 0)
            return &isas[i];
    return NULL;
}

const adamas_kernels *adamas_kernels_by_name(const char *name)
{
    const isa_entry *e = name ? find_isa(name) : NULL;
    return e && e->table && e->cpu_has() ? e->table : NULL;
}

/* The table named `name` ("auto" or NULL: the best available), or an error naming why
 * it cannot be had; `origin` says where the name came from, for the message. */
static int resolve(const char *name, const char *origin, const adamas_kernels **out)
{
    if (!name || !*name || strcmp(name, "auto") == 0) {
        for (size_t i = 0; i < N_ISAS; i++)
            if (isas[i].table && isas[i].cpu_has()) {
                *out = isas[i].table;
                return ADAMAS_OK;
            }
        *out = &adamas_kernels_scalar; /* not reached: scalar is always listed */
        return ADAMAS_OK;
    }
    const isa_entry *e = find_isa(name);
    if (!e)
        return adamas_fail(ADAMAS_EINVAL,
                           "%s: unknown ISA \"%s\" (expected scalar, avx2, avx512, neon or auto)",
                           origin, name);
    if (!e->table)
        return adamas_fail(ADAMAS_ENOTSUP, "%s: ISA \"%s\" is not compiled into this build",
                           origin, name);
    if (!e->cpu_has())
        return adamas_fail(ADAMAS_ENOTSUP, "%s: this CPU lacks ISA \"%s\"", origin, name);
    *out = e->table;
    return ADAMAS_OK;
}

int adamas_kernels_get(const adamas_kernels **out)
{
    const adamas_kernels *k = atomic_load_explicit(&current, memory_order_acquire);
    if (!k) {
        /* A bad ADAMAS_ISA is not remembered: every call reports it again. */
        int st = resolve(getenv("ADAMAS_ISA"), "ADAMAS_ISA", &k);
        if (st)
            return st;
        atomic_store_explicit(&current, k, memory_order_release);
    }
    *out = k;
    return ADAMAS_OK;
}

int adamas_set_isa(const char *name)
{
    const adamas_kernels *k;
    int st = resolve(name, "adamas_set_isa", &k);
    if (st)
        return st;
    atomic_store_explicit(&current, k, memory_order_release);
    return ADAMAS_OK;
}

const char *adamas_isa_name(void)
{
    const adamas_kernels *k;
    return adamas_kernels_get(&k) ? "none" : k->name;
}

int adamas_isa_available(const char *name)
{
    return (name && strcmp(name, "auto") == 0) || adamas_kernels_by_name(name) != NULL;
}
