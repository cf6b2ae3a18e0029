// Control-page setup and validation, and the final checksum. See control.h.
#include "guest/control.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdio>
#include <cstring>

#include "workloads/workloads.h"

namespace guest {

namespace {

uint64_t splitmix(uint64_t* x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

}  // namespace

const char* workload_name(uint32_t w) {
  switch (w) {
    case US_WL_UNIFORM: return "uniform";
    case US_WL_HOTSET: return "hotset";
    case US_WL_SEQUENTIAL: return "sequential";
    case US_WL_SPARSE: return "sparse";
    case US_WL_MEMCHECK: return "memcheck";
    case US_WL_KV: return "kv";
    default: return nullptr;
  }
}

std::string hex16(uint64_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; i--, v >>= 4) s[i] = digits[v & 15];
  return s;
}

void seed_vcpu(uint64_t seed, uint32_t vcpu, uint64_t rng[4]) {
  uint64_t x = seed ^ (0xD1B54A32D192ED03ull * (vcpu + 1ull));
  for (int i = 0; i < 4; i++) rng[i] = splitmix(&x);
  if ((rng[0] | rng[1] | rng[2] | rng[3]) == 0) rng[0] = 1;
}

std::string check_config(const Config& cfg, size_t mem_size) {
  if (!workload_name(cfg.workload)) return "`workload` is unknown: id " + std::to_string(cfg.workload);
  if (cfg.vcpus < 1 || cfg.vcpus > US_MAX_VCPUS) {
    return "`vcpus` must be from 1 to " + std::to_string(US_MAX_VCPUS) + ", got " + std::to_string(cfg.vcpus);
  }
  if (mem_size < US_MIN_MEMORY || mem_size % US_PAGE_SIZE != 0) {
    return "guest memory must be whole 4096-byte pages and at least " + std::to_string(US_MIN_MEMORY) +
           " bytes, got " + std::to_string(mem_size);
  }
  uint64_t start, size;
  if (!us_partition(mem_size, cfg.vcpus, 0, &start, &size)) {
    return "guest memory of " + std::to_string(mem_size) + " bytes is too small for " + std::to_string(cfg.vcpus) + " vCPUs";
  }
  if (cfg.flags & ~static_cast<uint32_t>(US_FLAG_NONDETERMINISTIC)) return "`flags` has unknown bits";
  return "";
}

void setup_control(uint8_t* mem, size_t mem_size, const Config& cfg) {
  us_control* c = control(mem);
  std::memset(c, 0, US_PAGE_SIZE);
  c->magic = US_ABI_MAGIC;
  c->abi_version = US_ABI_VERSION;
  c->workload = cfg.workload;
  c->vcpus = cfg.vcpus;
  c->seed = cfg.seed;
  c->steps = cfg.steps;
  c->mem_size = mem_size;
  us_effective_params(cfg.workload, mem_size, cfg.vcpus, cfg.params, c->params);
  c->flags = cfg.flags;
  c->status = US_STATUS_RUNNING;
  for (uint32_t i = 0; i < cfg.vcpus; i++) seed_vcpu(cfg.seed, i, c->vcpu[i].rng);
}

std::string check_control(const uint8_t* mem, size_t size, const char* name) {
  const std::string n = std::string("`") + name + "`";
  if (size < US_MIN_MEMORY || size % US_PAGE_SIZE != 0) {
    return n + " must be whole 4096-byte pages and at least " + std::to_string(US_MIN_MEMORY) + " bytes, got " +
           std::to_string(size) + " bytes";
  }
  const us_control* c = control(mem);
  if (c->magic != US_ABI_MAGIC) return n + " is not an understudy guest memory image (no control page at 0x10000)";
  if (c->abi_version != US_ABI_VERSION) {
    return n + " has guest ABI version " + std::to_string(c->abi_version) + "; this build runs version " +
           std::to_string(US_ABI_VERSION);
  }
  if (c->mem_size != size) {
    return n + " is " + std::to_string(size) + " bytes but its control page says " + std::to_string(c->mem_size);
  }
  if (!workload_name(c->workload)) return n + " names an unknown workload (id " + std::to_string(c->workload) + ")";
  if (c->vcpus < 1 || c->vcpus > US_MAX_VCPUS) return n + " has " + std::to_string(c->vcpus) + " vCPUs (1 to 16 allowed)";
  uint64_t start, psize;
  if (!us_partition(size, c->vcpus, 0, &start, &psize)) return n + " is too small for its " + std::to_string(c->vcpus) + " vCPUs";
  if (c->flags & ~static_cast<uint32_t>(US_FLAG_NONDETERMINISTIC)) return n + " has unknown flags " + std::to_string(c->flags);
  if (c->status == US_STATUS_PANIC) return n + " is of a guest that panicked (code 0x" + hex16(c->panic_code) + ")";
  if (c->status != US_STATUS_RUNNING && c->status != US_STATUS_DONE) return n + " has an unknown status " + std::to_string(c->status);
  const uint64_t head = c->ring_head, tail = c->ring_tail;
  if (tail > head || head - tail > US_RING_RECORDS || c->next_seq != head) {
    return n + " has a corrupt output ring (head " + std::to_string(head) + ", tail " + std::to_string(tail) + ", next " +
           std::to_string(c->next_seq) + ")";
  }
  bool every_done = true;
  for (uint32_t i = 0; i < c->vcpus; i++) {
    const us_vcpu_state& v = c->vcpu[i];
    if (v.step > c->steps || v.done > 1 || (v.done && v.step != c->steps) || (v.rng[0] | v.rng[1] | v.rng[2] | v.rng[3]) == 0) {
      return n + " has an inconsistent state for vCPU " + std::to_string(i) + " (step " + std::to_string(v.step) + " of " +
             std::to_string(c->steps) + ", done " + std::to_string(v.done) + ")";
    }
    every_done = every_done && v.step == c->steps;
  }
  if (c->status == US_STATUS_DONE && !every_done) return n + " says the run is done but a vCPU has steps left";
  return "";
}

void count_pause(uint8_t* mem) {
  us_control* c = control(mem);
  __atomic_store_n(&c->pause_id, __atomic_load_n(&c->pause_id, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
}

bool all_done(const uint8_t* mem) {
  const us_control* c = control(mem);
  for (uint32_t i = 0; i < c->vcpus && i < US_MAX_VCPUS; i++) {
    if (c->vcpu[i].step < c->steps) return false;
  }
  return true;
}

uint64_t final_checksum(const uint8_t* mem) {
  const us_control* c = control(mem);
  uint8_t buf[24 + 16 * US_MAX_VCPUS + 16];
  size_t o = 0;
  put32(buf + o, c->workload), o += 4;
  put32(buf + o, c->vcpus), o += 4;
  put64(buf + o, c->seed), o += 8;
  put64(buf + o, c->steps), o += 8;
  for (uint32_t i = 0; i < c->vcpus && i < US_MAX_VCPUS; i++) {
    put64(buf + o, c->vcpu[i].checksum), o += 8;
    put64(buf + o, c->vcpu[i].step), o += 8;
  }
  put64(buf + o, c->ring_head), o += 8;
  put64(buf + o, c->out_chain), o += 8;
  return XXH3_64bits(buf, o);
}

std::string panic_message(uint32_t vcpu, uint64_t code) {
  const uint64_t gpa = code & ~0xfffull;
  const char* what = nullptr;
  switch (code & 0xfff) {
    case US_PANIC_TORN: what = "torn page (its checksum does not match its contents)"; break;
    case US_PANIC_LOST: what = "lost or stale page (its counter does not match the sweep)"; break;
    case US_PANIC_DIRTY: what = "page that was never written is not zero"; break;
    default: break;
  }
  char buf[160];
  if (what != nullptr) {
    std::snprintf(buf, sizeof buf, "memcheck found a %s at gpa 0x%llx", what, static_cast<unsigned long long>(gpa));
  } else {
    std::snprintf(buf, sizeof buf, "the workload panicked with code 0x%llx (it detected corrupt memory or a broken invariant)",
                  static_cast<unsigned long long>(code));
  }
  return "guest panic on vCPU " + std::to_string(vcpu) + ": " + buf;
}

}  // namespace guest
