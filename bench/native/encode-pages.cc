// Native-only timing of kernels::delta::encode_pages (no N-API, no JS allocation): the best of
// 40 calls over a batch of page pairs written by bench/native/dump-pages.ts, alternating
// direction so the shadow never settles. Best-of filters out time slices lost to other jobs on
// a shared machine. Build and run (from the package root):
//
//   npx tsx bench/native/dump-pages.ts realistic 4096 /tmp
//   g++ -std=c++17 -O3 -Inative bench/native/encode-pages.cc $(node scripts/sources.mjs kernels) \
//     build/Release/understudy_avx2.a build/Release/understudy_avx512.a -llz4 -lpthread -o /tmp/ep
//   /tmp/ep /tmp/realistic.old /tmp/realistic.new [threads] [isa]
//
// Environment: UNDERSTUDY_NO_ENTROPY=1 (entropy: false), UNDERSTUDY_NO_OWN_CODES=1 (ownCodes:
// false), UNDERSTUDY_OWN_MIN=N (ownCodes: N), UNDERSTUDY_SPREAD=1 (pfns with gaps in a
// larger shadow instead of one run), UNDERSTUDY_REPS=N (calls timed, default 40),
// UNDERSTUDY_ENCODE_ONLY=1 (no applyPages timing: for profiling the encoder).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/features.h"
#include "kernels/delta/codec.h"
#include "kernels/delta/frame.h"
#include "kernels/dispatch.h"

static std::vector<uint8_t> slurp(const char* path) {
  std::vector<uint8_t> v;
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) {
    std::perror(path);
    std::exit(2);
  }
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) v.insert(v.end(), buf, buf + n);
  std::fclose(f);
  return v;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OLD NEW [threads] [isa]\n", argv[0]);
    return 2;
  }
  std::vector<uint8_t> old = slurp(argv[1]), nx = slurp(argv[2]);
  const size_t ps = 4096, count = old.size() / ps;
  if (nx.size() != old.size() || count == 0) return 2;
  const unsigned threads = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 1;
  const bool entropy = std::getenv("UNDERSTUDY_NO_ENTROPY") == nullptr;
  // UNDERSTUDY_OWN_MIN=N: own codes from N literals (ownCodes: N).
  const size_t own = std::getenv("UNDERSTUDY_NO_OWN_CODES") != nullptr ? 0
                     : std::getenv("UNDERSTUDY_OWN_MIN") != nullptr
                         ? static_cast<size_t>(std::atol(std::getenv("UNDERSTUDY_OWN_MIN")))
                         : kernels::delta::kOwnMinLiterals;
  cpu::Isa isa = cpu::best();
  if (argc > 4 && (!cpu::parse(argv[4], &isa) || !cpu::supported(isa))) return 2;
  const kernels::delta::Ops& ops = *kernels::row(isa).delta;
  std::vector<uint32_t> pfns(count);
  // UNDERSTUDY_SPREAD=1: the pfns ascend with gaps (page i at 3i + i % 3 of a shadow three times
  // the batch), as a dirty log's do, instead of one contiguous run.
  const bool spread = std::getenv("UNDERSTUDY_SPREAD") != nullptr;
  const size_t shadow_pages = spread ? 3 * count + 2 : count;
  for (size_t i = 0; i < count; i++) pfns[i] = static_cast<uint32_t>(spread ? 3 * i + i % 3 : i);
  std::vector<uint8_t> shadow(shadow_pages * ps);
  for (size_t i = 0; i < count; i++) std::memcpy(&shadow[size_t{pfns[i]} * ps], &old[i * ps], ps);
  double best = 1e300;
  size_t out = 0;
  size_t kinds[256] = {}, kind_bytes[256] = {};
  // UNDERSTUDY_REPS: calls to time (default 40; fewer for callgrind).
  const int reps = std::getenv("UNDERSTUDY_REPS") != nullptr ? std::atoi(std::getenv("UNDERSTUDY_REPS")) : 40;
  for (int rep = 0; rep < reps; rep++) {
    const uint8_t* pages = (rep & 1) ? old.data() : nx.data();
    const auto t0 = std::chrono::steady_clock::now();
    kernels::delta::Encoded e;
    if (kernels::delta::encode_pages(ops, shadow.data(), pages, pfns.data(), count, ps, threads, true, entropy, own, &e)) return 1;
    const double t = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    out = e.length;
    if (rep == 0) {  // pages by kind, and their body bytes (the index of the first frame)
      for (size_t i = 0; i < count; i++) {
        const uint8_t* x = e.data + kernels::delta::kFrameHeader + i * kernels::delta::kIndexEntry;
        kinds[x[4]]++;
        kind_bytes[x[4]] += size_t{x[5]} | size_t{x[6]} << 8 | size_t{x[7]} << 16;
      }
    }
    kernels::delta::release_frame(e.data, e.capacity);  // as the addon's finalizer does
    if (t < best) best = t;
  }
  double apply_best = 1e300;
  {
    // The frame must decode to the new pages: a fast encoder that is wrong measures nothing.
    std::vector<uint8_t> sh(shadow_pages * ps), replica(shadow_pages * ps);
    for (size_t i = 0; i < count; i++) {
      std::memcpy(&sh[size_t{pfns[i]} * ps], &old[i * ps], ps);
      std::memcpy(&replica[size_t{pfns[i]} * ps], &old[i * ps], ps);
    }
    kernels::delta::Encoded e;
    if (kernels::delta::encode_pages(ops, sh.data(), nx.data(), pfns.data(), count, ps, threads, true, entropy, own, &e)) return 1;
    kernels::delta::FrameView fv;
    std::string why;
    if (!kernels::delta::check_frame(e.data, e.length, ps, shadow_pages, threads, &fv, &why)) {
      std::fprintf(stderr, "frame refused: %s\n", why.c_str());
      return 1;
    }
    kernels::delta::apply_frame(replica.data(), fv, threads);
    bool same = true;
    for (size_t i = 0; i < count; i++) same = same && std::memcmp(&replica[size_t{pfns[i]} * ps], &nx[i * ps], ps) == 0;
    if (!same) {
      std::fprintf(stderr, "frame does not decode to the new pages\n");
      return 1;
    }
    // applyPages' work (check everything, then apply) on the same frame, best of 20 (none with
    // UNDERSTUDY_ENCODE_ONLY, for profiling the encoder alone).
    const int apply_reps = std::getenv("UNDERSTUDY_ENCODE_ONLY") != nullptr ? 0 : 20;
    for (int rep = 0; rep < apply_reps; rep++) {
      const auto t0 = std::chrono::steady_clock::now();
      kernels::delta::check_frame(e.data, e.length, ps, shadow_pages, threads, &fv, &why);
      kernels::delta::apply_frame(replica.data(), fv, threads);
      const double t = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
      if (t < apply_best) apply_best = t;
    }
    std::free(e.data);
  }
  std::printf("%s, %u thread(s), %zu pages: %.0f ns/page, %.2f GB/s, output %.2f %%\n", ops.isa, threads,
              count, best / count, count * ps / best, 100.0 * out / (count * ps));
  if (apply_best < 1e300) {
    std::printf("  apply (check + apply): %.0f ns/page, %.2f GB/s\n", apply_best / count, count * ps / apply_best);
  }
  std::printf("  kinds (pages/bytes):");
  for (int k = 0; k < 256; k++) {
    if (kinds[k] != 0) std::printf(" %d:%zu/%zu", k, kinds[k], kind_bytes[k]);
  }
  std::printf("\n");
  return 0;
}
