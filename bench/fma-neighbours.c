// Which AVX-512 instructions issue beside a stream of FMAs for free, and which take FMA-pipe cycles: the question
// behind the fused attention's softmax (its exponentials run between the two products). Each loop keeps 12
// independent 512-bit FMA chains in flight (12 cycles per iteration where one FMA issues per cycle) and adds four or
// more instructions of one kind on chains of their own; the time per iteration above the FMA-only loop is what they
// cost. On Zen 4 (2026-11-27): add, max, and, vpermps, vrndscaleps, vscalefps, integer shifts and broadcast loads
// are free; vmulps and compares into mask registers cost about a cycle each; vpermt2ps more. vreduceps and vsubps
// (the exponential's f = x − round(x) and n = x − f since the twenty-eighth session) are free too (2026-11-29).
// Build and run: gcc -O2 -mavx512f -mavx512dq -o /tmp/fma-neighbours bench/fma-neighbours.c && /tmp/fma-neighbours
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define ITERATIONS 8000000L

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float memory[1024] __attribute__((aligned(64)));

// The 12 FMA chains, kept in registers by the empty asm statements (which also stop the compiler merging them).
#define FMAS                                                                                                       \
    a0 = _mm512_fmadd_ps(a0, m, c); a1 = _mm512_fmadd_ps(a1, m, c); a2 = _mm512_fmadd_ps(a2, m, c);                 \
    a3 = _mm512_fmadd_ps(a3, m, c); a4 = _mm512_fmadd_ps(a4, m, c); a5 = _mm512_fmadd_ps(a5, m, c);                 \
    a6 = _mm512_fmadd_ps(a6, m, c); a7 = _mm512_fmadd_ps(a7, m, c); a8 = _mm512_fmadd_ps(a8, m, c);                 \
    a9 = _mm512_fmadd_ps(a9, m, c); a10 = _mm512_fmadd_ps(a10, m, c); a11 = _mm512_fmadd_ps(a11, m, c);

#define RUN(name, ...)                                                                                             \
    {                                                                                                              \
        __m512 a0 = _mm512_set1_ps(1), a1 = _mm512_set1_ps(2), a2 = _mm512_set1_ps(3), a3 = _mm512_set1_ps(4);     \
        __m512 a4 = _mm512_set1_ps(5), a5 = _mm512_set1_ps(6), a6 = _mm512_set1_ps(7), a7 = _mm512_set1_ps(8);     \
        __m512 a8 = _mm512_set1_ps(9), a9 = _mm512_set1_ps(10), a10 = _mm512_set1_ps(11), a11 = _mm512_set1_ps(12); \
        __m512 e0 = _mm512_set1_ps(0.5f), e1 = _mm512_set1_ps(0.25f), e2 = _mm512_set1_ps(0.125f), e3 = _mm512_set1_ps(0.7f); \
        double t = now();                                                                                          \
        for (long i = 0; i < ITERATIONS; i++)                                                                      \
        {                                                                                                          \
            FMAS __VA_ARGS__                                                                                       \
            __asm__ volatile("" : "+v"(e0), "+v"(e1), "+v"(e2), "+v"(e3), "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3)); \
            __asm__ volatile("" : "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11)); \
        }                                                                                                          \
        t = now() - t;                                                                                             \
        __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),                      \
                                 _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));                     \
        s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));                       \
        s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3)));                         \
        printf("%-28s %6.3f ns per 12 FMAs  (checksum %g)\n", name, t / ITERATIONS * 1e9, _mm512_reduce_add_ps(s)); \
    }

int main(void)
{
    __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f), y = _mm512_set1_ps(-3.3f);
    __m512i index = _mm512_set1_epi32(3);
    const float *mem = memory;
    __asm__ volatile("" : "+v"(m), "+v"(c), "+v"(y), "+v"(index), "+r"(mem));
    for (int round = 0; round < 2; round++)
    {
        RUN("FMAs only")
        RUN("+4 vaddps", e0 = _mm512_add_ps(e0, y); e1 = _mm512_add_ps(e1, y); e2 = _mm512_add_ps(e2, y); e3 = _mm512_add_ps(e3, y);)
        RUN("+8 vaddps", e0 = _mm512_add_ps(e0, y); e1 = _mm512_add_ps(e1, y); e2 = _mm512_add_ps(e2, y); e3 = _mm512_add_ps(e3, y);
                         e0 = _mm512_add_ps(e0, y); e1 = _mm512_add_ps(e1, y); e2 = _mm512_add_ps(e2, y); e3 = _mm512_add_ps(e3, y);)
        RUN("+4 vmulps", e0 = _mm512_mul_ps(e0, m); e1 = _mm512_mul_ps(e1, m); e2 = _mm512_mul_ps(e2, m); e3 = _mm512_mul_ps(e3, m);)
        RUN("+4 vmaxps", e0 = _mm512_max_ps(e0, y); e1 = _mm512_max_ps(e1, y); e2 = _mm512_max_ps(e2, y); e3 = _mm512_max_ps(e3, y);)
        RUN("+4 vandps", e0 = _mm512_and_ps(e0, y); e1 = _mm512_and_ps(e1, y); e2 = _mm512_and_ps(e2, y); e3 = _mm512_and_ps(e3, y);)
        RUN("+4 vrndscaleps", e0 = _mm512_roundscale_ps(e0, 8); e1 = _mm512_roundscale_ps(e1, 8); e2 = _mm512_roundscale_ps(e2, 8); e3 = _mm512_roundscale_ps(e3, 8);)
        RUN("+4 vreduceps", e0 = _mm512_reduce_ps(e0, 8); e1 = _mm512_reduce_ps(e1, 8); e2 = _mm512_reduce_ps(e2, 8); e3 = _mm512_reduce_ps(e3, 8);)
        RUN("+4 vsubps", e0 = _mm512_sub_ps(e0, y); e1 = _mm512_sub_ps(e1, y); e2 = _mm512_sub_ps(e2, y); e3 = _mm512_sub_ps(e3, y);)
        RUN("+4 vscalefps", e0 = _mm512_scalef_ps(e0, y); e1 = _mm512_scalef_ps(e1, y); e2 = _mm512_scalef_ps(e2, y); e3 = _mm512_scalef_ps(e3, y);)
        RUN("+4 vpermps", e0 = _mm512_permutexvar_ps(index, e0); e1 = _mm512_permutexvar_ps(index, e1); e2 = _mm512_permutexvar_ps(index, e2); e3 = _mm512_permutexvar_ps(index, e3);)
        RUN("+4 vpermt2ps", e0 = _mm512_permutex2var_ps(e0, index, y); e1 = _mm512_permutex2var_ps(e1, index, y); e2 = _mm512_permutex2var_ps(e2, index, y); e3 = _mm512_permutex2var_ps(e3, index, y);)
        RUN("+4 vpsrad", e0 = _mm512_castsi512_ps(_mm512_srai_epi32(_mm512_castps_si512(e0), 1)); e1 = _mm512_castsi512_ps(_mm512_srai_epi32(_mm512_castps_si512(e1), 1));
                         e2 = _mm512_castsi512_ps(_mm512_srai_epi32(_mm512_castps_si512(e2), 1)); e3 = _mm512_castsi512_ps(_mm512_srai_epi32(_mm512_castps_si512(e3), 1));)
        RUN("+4 vcmpps into k", {
            __mmask16 k0 = _mm512_cmp_ps_mask(e0, y, _CMP_GE_OQ), k1 = _mm512_cmp_ps_mask(e1, y, _CMP_GE_OQ);
            __mmask16 k2 = _mm512_cmp_ps_mask(e2, y, _CMP_GE_OQ), k3 = _mm512_cmp_ps_mask(e3, y, _CMP_GE_OQ);
            __asm__ volatile("" : "+Yk"(k0), "+Yk"(k1), "+Yk"(k2), "+Yk"(k3));
        })
        RUN("+4 vbroadcastss from memory", __asm__ volatile(
            "vbroadcastss (%4), %0\n\tvbroadcastss 4(%4), %1\n\tvbroadcastss 8(%4), %2\n\tvbroadcastss 12(%4), %3"
            : "=v"(e0), "=v"(e1), "=v"(e2), "=v"(e3) : "r"(mem));)
        RUN("+4 broadcasts, +4 loads", __asm__ volatile(
            "vbroadcastss (%4), %0\n\tvbroadcastss 4(%4), %1\n\tvbroadcastss 8(%4), %2\n\tvbroadcastss 12(%4), %3\n\t"
            "vmovups 64(%4), %0\n\tvmovups 128(%4), %1\n\tvmovups 192(%4), %2\n\tvmovups 256(%4), %3"
            : "=v"(e0), "=v"(e1), "=v"(e2), "=v"(e3) : "r"(mem));)
    }
    return 0;
}
