/*
 * prefetch.h - asking for memory ahead of use, shared by decode and the SIMD scans.
 *
 * A prefetch into L1 holds one of the core's few line fill buffers until memory
 * answers, which caps how far ahead it can usefully run.  Streaming passes (the code
 * scans, dense attention over contiguous rows) therefore ask twice: into L1 a little
 * ahead, and into L2 only (prefetcht2) L2_PREFETCH_BYTES ahead, which starts memory
 * early; the L1 prefetch then finds the lines nearer.  Measured side by side (32/8
 * heads, 32K tokens, 1 thread, data from memory): FULL f32 22.4-23.0 -> 19.9-20.6 ms,
 * the AVX-512 grouped scan 0.743 -> 0.705 ms; 8 to 64 KiB ahead alike; the L2
 * prefetch alone (no L1 one) slower than the L1 one alone.
 */
#ifndef ADAMAS_PREFETCH_H
#define ADAMAS_PREFETCH_H

#include <stddef.h>

/* How far ahead streaming passes also ask for their lines into L2 only. */
#define L2_PREFETCH_BYTES 16384

/* Ask for the cache lines of bytes at p, which will be read soon... */
static inline void adamas_prefetch(const void *p, size_t bytes)
{
#if defined(__GNUC__)
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch((const char *)p + off);
#else
    (void)p;
    (void)bytes;
#endif
}

/* ...into L2 only (the lowest temporal locality: prefetcht2 on x86), one line in
 * every `stride` bytes (a multiple of 64); the L2's own prefetchers (the adjacent
 * line, the streamer) may fetch the lines between... */
static inline void adamas_prefetch_l2_every(const void *p, size_t bytes, size_t stride)
{
#if defined(__GNUC__)
    for (size_t off = 0; off < bytes; off += stride)
        __builtin_prefetch((const char *)p + off, 0, 1);
#else
    (void)p;
    (void)bytes;
    (void)stride;
#endif
}

/* ...or every line. */
static inline void adamas_prefetch_l2(const void *p, size_t bytes)
{
    adamas_prefetch_l2_every(p, bytes, 64);
}

/* Ask for the cache lines of bytes at p, which will be written soon (prefetchw on x86):
 * appends to lists that left the caches since the last step would otherwise wait for
 * each line. */
static inline void adamas_prefetch_write(void *p, size_t bytes)
{
#if defined(__GNUC__)
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch((char *)p + off, 1);
#else
    (void)p;
    (void)bytes;
#endif
}

#endif
