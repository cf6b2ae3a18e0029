/*
 * The two libc functions a freestanding GCC/Clang build may emit calls to (struct copies, zeroing
 * loops), for the KVM payload only. Weak, so the payload's own (native/payload) may replace them.
 * The addon build gets them from the real libc, so this file compiles to nothing there.
 */
#ifdef US_PAYLOAD
#include <stddef.h>

__attribute__((weak)) void *memcpy(void *dst, const void *src, size_t n) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

__attribute__((weak)) void *memset(void *dst, int v, size_t n) {
  unsigned char *d = dst;
  while (n--) *d++ = (unsigned char)v;
  return dst;
}
#else
typedef int us_libc_unused; /* ISO C forbids an empty translation unit */
#endif
