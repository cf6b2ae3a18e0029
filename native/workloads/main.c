/*
 * The vCPU loop shared by every workload: rebuild the context from the control page, then run
 * steps until this vCPU's step count is reached. Each step loads the PRNG state and running
 * checksum from the vCPU's slot in the control page, runs the workload's step function, and
 * writes both back with the step counter, so a step boundary is a consistent state in guest
 * memory alone (the sim pauses, saves and restores only there).
 */
#include "common.h"

int us_partition(uint64_t mem_size, uint32_t vcpus, uint32_t vcpu, uint64_t *start, uint64_t *size) {
  *start = 0;
  *size = 0;
  if (vcpus < 1 || vcpus > US_MAX_VCPUS || vcpu >= vcpus || mem_size < US_MIN_MEMORY) return 0;
  const uint64_t part = ((mem_size - US_DATA_GPA) / vcpus) & ~(uint64_t)(US_PAGE_SIZE - 1);
  if (part < US_PAGE_SIZE) return 0;
  *start = US_DATA_GPA + (uint64_t)vcpu * part;
  *size = part;
  return 1;
}

int us_vcpu_run(const struct us_env *env, uint32_t vcpu) {
  struct us_ctx c;
  c.mem = env->mem;
  c.dirty = env->dirty;
  c.host = env->host;
  c.ctl = (struct us_control *)(env->mem + US_CONTROL_GPA);
  c.vcpu = vcpu;
  const struct us_control *ctl = c.ctl;
  if (ctl->magic != US_ABI_MAGIC || ctl->abi_version != US_ABI_VERSION) return US_RUN_BAD;
  if (!us_partition(env->mem_size, ctl->vcpus, vcpu, &c.region, &c.region_size)) return US_RUN_BAD;
  c.st = &c.ctl->vcpu[vcpu];
  c.emits = vcpu == 0;
  c.steps = ctl->steps;
  for (int i = 0; i < 8; i++) c.p[i] = ctl->params[i];

  uint64_t (*step_fn)(struct us_ctx *, uint64_t, uint64_t *, uint64_t *);
  switch (ctl->workload) {
    case US_WL_UNIFORM: us_prepare_uniform(&c); step_fn = us_step_uniform; break;
    case US_WL_HOTSET: us_prepare_hotset(&c); step_fn = us_step_hotset; break;
    case US_WL_SEQUENTIAL: us_prepare_sequential(&c); step_fn = us_step_sequential; break;
    case US_WL_SPARSE: us_prepare_sparse(&c); step_fn = us_step_sparse; break;
    case US_WL_MEMCHECK: us_prepare_memcheck(&c); step_fn = us_step_memcheck; break;
    case US_WL_KV: us_prepare_kv(&c); step_fn = us_step_kv; break;
    default: return US_RUN_BAD;
  }

  struct us_vcpu_state *st = c.st;
  const int nondet = (ctl->flags & US_FLAG_NONDETERMINISTIC) != 0;
  for (;;) {
    const uint64_t step = st->step;
    if (step >= c.steps) break;
    if (us_yield(&c)) return US_RUN_STOPPED;
    uint64_t s[4] = {st->rng[0], st->rng[1], st->rng[2], st->rng[3]};
    uint64_t h = st->checksum;
    if (nondet) {
      /* The host writes clock only while every vCPU is paused; volatile keeps the payload build
       * from hoisting the read out of the loop. */
      s[0] ^= *(volatile const uint64_t *)&ctl->clock;
      if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = US_K1;
    }
    const uint64_t r = step_fn(&c, step, s, &h);
    if (r == US_STEP_STOP) return US_RUN_STOPPED;
    if (r) {
      c.ctl->panic_code = r;
      __atomic_store_n(&c.ctl->status, (uint32_t)US_STATUS_PANIC, __ATOMIC_RELEASE);
      us_mark(&c, US_CONTROL_GPA);
      return US_RUN_PANIC;
    }
    st->rng[0] = s[0];
    st->rng[1] = s[1];
    st->rng[2] = s[2];
    st->rng[3] = s[3];
    st->checksum = h;
    st->step = step + 1;
    us_mark(&c, US_CONTROL_GPA);
  }
  if (!st->done) {
    st->done = 1;
    us_mark(&c, US_CONTROL_GPA);
  }
  return US_RUN_DONE;
}

#ifdef US_PAYLOAD
/* Returns when this vCPU has finished its steps (the payload's start code then reports
 * US_PORT_EXIT). On a panic it reports US_PORT_PANIC and never returns: the VMM stops the vCPU
 * at that exit, the spin is only a backstop (it may run in ring 3, so no HLT). */
void us_vcpu_main(uint8_t *mem, uint32_t vcpu) {
  const struct us_control *ctl = (const struct us_control *)(mem + US_CONTROL_GPA);
  struct us_env env = {mem, ctl->mem_size, 0, 0};
  const int r = us_vcpu_run(&env, vcpu);
  if (r == US_RUN_DONE) return;
  us_outl(US_PORT_PANIC, r == US_RUN_PANIC ? (uint32_t)ctl->panic_code : 0);
  for (;;) __asm__ volatile("pause");
}
#endif

int us_effective_params(uint32_t workload, uint64_t mem_size, uint32_t vcpus, const uint64_t *in, uint64_t *out) {
  struct us_ctx c;
  if (!us_partition(mem_size, vcpus, 0, &c.region, &c.region_size)) return 0;
  for (int i = 0; i < 8; i++) c.p[i] = in[i];
  switch (workload) {
    case US_WL_UNIFORM: us_prepare_uniform(&c); break;
    case US_WL_HOTSET: us_prepare_hotset(&c); break;
    case US_WL_SEQUENTIAL: us_prepare_sequential(&c); break;
    case US_WL_SPARSE: us_prepare_sparse(&c); break;
    case US_WL_MEMCHECK: us_prepare_memcheck(&c); break;
    case US_WL_KV: us_prepare_kv(&c); break;
    default: return 0;
  }
  if (workload != US_WL_KV) c.p[7] = us_clamp(c.p[7] ? c.p[7] : 64, 1, 1ull << 32);
  for (int i = 0; i < 8; i++) out[i] = c.p[i];
  return 1;
}
