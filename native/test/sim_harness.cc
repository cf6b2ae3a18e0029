// Sanitizer harness for the simulated guest (not part of the addon: native/test/ is excluded).
// Runs every workload with 1 and 2 vCPUs through pauses, dirty fetches, output drains, a save and
// a restore, then restores images whose control page, params, scratch and data were scribbled
// on, checking that nothing crashes and restored runs end with the reference checksum.
//
//   for f in native/workloads/*.c; do
//     gcc -std=gnu11 -g -O1 -fsanitize=address,undefined -Inative -c $f -o out/$(basename $f).o; done
//   g++ -std=c++17 -g -O1 -fsanitize=address,undefined -Inative native/test/sim_harness.cc (continued)
//     native/sim/sim.cc native/guest/*.cc native/runtime/memory.cc out/*.o -lpthread -o out/sim_harness
//   out/sim_harness     # prints one line per workload and vCPU count, then "all ok"; exit 1 on failure
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "guest/control.h"
#include "sim/sim.h"
#include "workloads/workloads.h"

namespace {

struct Outcome {
  bool done = false;
  bool failed = false;
  uint64_t final = 0;
  std::string error;
};

std::shared_ptr<runtime::Mapping> alloc(size_t bytes) {
  runtime::SysError e;
  auto m = runtime::Mapping::allocate(bytes, &e);
  if (!m) {
    std::fprintf(stderr, "allocate failed: %s\n", e.syscall);
    std::exit(2);
  }
  return m;
}

// Runs to the end with `pauses` pauses; optionally saves at pause `save_at`.
Outcome run(std::shared_ptr<runtime::Mapping> mem, std::vector<guest::Record> pending, int pauses, std::mt19937_64& rng,
            int save_at = -1, std::vector<uint8_t>* image = nullptr, std::vector<uint8_t>* blob = nullptr) {
  Outcome out;
  std::mutex mu;
  std::condition_variable cv;
  sim::SimGuest g(mem, true, [&](const sim::Event& ev) {
    std::lock_guard<std::mutex> l(mu);
    if (ev.kind == sim::Event::kExit) out.done = true, out.final = ev.final;
    else out.failed = true, out.error = ev.message;
    cv.notify_all();
  });
  if (!pending.empty()) g.set_pending(std::move(pending));
  std::vector<uint8_t> bitmap((g.pages() + 7) / 8);
  std::vector<uint32_t> pfns;
  std::vector<guest::Record> recs;
  g.start();
  for (int i = 0; i < pauses; i++) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
    g.pause();
    g.take_dirty(bitmap.data(), bitmap.size(), &pfns);
    if (i == save_at && image && blob) {
      image->assign(mem->data(), mem->data() + mem->size());
      *blob = g.save_cpu();
    }
    if (rng() % 2) g.take_output(&recs);
    g.resume();
  }
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return out.done || out.failed; });
  l.unlock();
  g.take_output(&recs);
  g.close();
  return out;
}

}  // namespace

int main() {
  std::mt19937_64 rng(42);
  const size_t bytes = 16u << 20;
  int failures = 0;
  for (uint32_t wl = US_WL_UNIFORM; wl <= US_WL_KV; wl++) {
    for (uint32_t vcpus : {1u, 2u}) {
      guest::Config cfg;
      cfg.workload = wl;
      cfg.vcpus = vcpus;
      cfg.seed = wl * 7 + vcpus;
      cfg.steps = 3000;
      auto mem = alloc(bytes);
      guest::setup_control(mem->data(), mem->size(), cfg);
      std::vector<uint8_t> image, blob;
      const Outcome ref = run(mem, {}, 40, rng, 10, &image, &blob);
      // Restore from the save.
      auto mem2 = alloc(bytes);
      std::memcpy(mem2->data(), image.data(), bytes);
      std::vector<guest::Record> pending;
      std::string err = guest::check_control(mem2->data(), bytes);
      if (err.empty()) err = sim::decode_cpu(blob.data(), blob.size(), mem2->data(), bytes, &pending);
      const Outcome again = err.empty() ? run(mem2, pending, 10, rng) : Outcome{};
      const bool ok = ref.done && again.done && again.final == ref.final;
      std::printf("%-10s %u vCPU(s): final %s restored %s %s\n", guest::workload_name(wl), vcpus, guest::hex16(ref.final).c_str(),
                  guest::hex16(again.final).c_str(), ok ? "ok" : ("MISMATCH " + err + again.error).c_str());
      failures += !ok;
      // Scribble on the image (params, scratch, data) and run it: must not crash.
      for (int trial = 0; trial < 2; trial++) {
        auto mem3 = alloc(bytes);
        std::memcpy(mem3->data(), image.data(), bytes);
        us_control* c = guest::control(mem3->data());
        for (auto& p : c->params) p = rng() >> (rng() % 64);
        for (uint32_t v = 0; v < vcpus; v++) for (auto& s : c->vcpu[v].scratch) s = rng();
        for (size_t o = US_DATA_GPA; o < bytes; o += 4096) if (rng() % 2) std::memset(mem3->data() + o, int(rng()), 512);
        if (!guest::check_control(mem3->data(), bytes).empty()) continue;
        pending.clear();
        if (!sim::decode_cpu(blob.data(), blob.size(), mem3->data(), bytes, &pending).empty()) continue;
        const Outcome o = run(mem3, pending, 5, rng);
        if (!o.done && !o.failed) failures++;
      }
      // Hostile blobs: every truncation and single-byte flip is rejected or consistent.
      for (size_t n = 0; n < blob.size(); n += 7) {
        std::vector<guest::Record> p;
        if (sim::decode_cpu(blob.data(), n, image.data(), bytes, &p).empty()) failures++;
      }
      for (size_t i = 0; i < blob.size(); i++) {
        std::vector<uint8_t> b = blob;
        b[i] ^= uint8_t(1 + rng() % 255);
        std::vector<guest::Record> p;
        if (sim::decode_cpu(b.data(), b.size(), image.data(), bytes, &p).empty()) failures++;
      }
    }
  }
  std::printf("%s\n", failures ? "FAILED" : "all ok");
  return failures ? 1 : 0;
}
