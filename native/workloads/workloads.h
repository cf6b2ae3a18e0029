/*
 * The workloads' entry points, as the hosts see them. The same C sources (native/workloads/ *.c)
 * are compiled twice:
 *
 *   - into the addon (no US_PAYLOAD): the simulated guest calls us_vcpu_run() on one native thread
 *     per vCPU, over the memfd guest memory. Stores mark pages in env->dirty (software dirty
 *     log), and the workload calls back into the host at each step boundary (us_host_yield), when
 *     the output ring is full (us_host_doorbell). The sim defines those two hooks.
 *   - into the KVM payload (-DUS_PAYLOAD -ffreestanding -fno-builtin -nostdlib
 *     -fno-delete-null-pointer-checks -mno-red-zone -mgeneral-regs-only): the payload's start
 *     code sets up a stack and calls us_vcpu_main(0, vcpu) (guest memory is identity-mapped, so
 *     the base address is 0). The hooks become port I/O (see abi.h), dirty marking a no-op.
 *     libc.c supplies memcpy/memset for that build (GCC may emit calls to them).
 *
 * Neither build keeps state in C globals: each step reads its state from the control page and
 * writes it back before the next step boundary.
 */
#ifndef UNDERSTUDY_WORKLOADS_WORKLOADS_H
#define UNDERSTUDY_WORKLOADS_WORKLOADS_H

#include <stdint.h>

#include "abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the host gives a vCPU to run on. */
struct us_env {
  uint8_t *mem;       /* guest-physical address 0 (the payload: 0, identity-mapped) */
  uint64_t mem_size;  /* bytes of guest memory actually mapped (the sim passes its mapping's) */
  uint64_t *dirty;    /* sim: one bit per page, set with atomic OR; NULL: no dirty tracking */
  void *host;         /* sim: passed back to the hooks */
};

enum us_run_result {
  US_RUN_DONE = 0,    /* every step done; vcpu[i].done == 1 */
  US_RUN_STOPPED = 1, /* a hook asked to stop (guest closed or another vCPU failed) */
  US_RUN_PANIC = 2,   /* the workload found corruption; control->status/panic_code are set */
  US_RUN_BAD = 3,     /* vcpu index out of range or the control page is not ours */
};

/* Runs vCPU `vcpu` from the step its state says until done, stop or panic. */
int us_vcpu_run(const struct us_env *env, uint32_t vcpu);

/* The payload's C entry point (mem = 0, from the payload's start code with RDI = 0, RSI = vcpu):
 * returns when the vCPU is done (the caller then does `out US_PORT_EXIT`); on a panic (or a
 * control page that is not ours, code 0) it does `out US_PORT_PANIC` itself and never returns. */
void us_vcpu_main(uint8_t *mem, uint32_t vcpu);

/* Host hooks (sim build only). Return nonzero to make the vCPU stop at once. */
int us_host_yield(void *host, uint32_t vcpu);
int us_host_doorbell(void *host, uint32_t vcpu);

/* The memcheck page checksum (word 1 of a memcheck page), over the page at `page` (4096 bytes)
 * whose guest-physical address is `gpa`. */
uint64_t us_memcheck_page_sum(const uint8_t *page, uint64_t gpa);

/*
 * Host-side verifier for a memcheck memory image (`mem`, `mem_size` bytes, control page already
 * validated by the host): checks every page of every vCPU's region against the counter its
 * sweep position implies and its checksum. Returns 0 if all pages are consistent, else the
 * panic code (gpa | enum us_panic) of the first bad page.
 */
uint64_t us_memcheck_verify(const uint8_t *mem, uint64_t mem_size);

/* The geometry every workload and host agree on. Returns 0 if vcpu/vcpus/mem_size make no
 * partition (then *start and *size are 0). */
int us_partition(uint64_t mem_size, uint32_t vcpus, uint32_t vcpu, uint64_t *start, uint64_t *size);

/* The parameters a workload actually runs with, given the requested ones (0 = default): each
 * workload's own clamping and defaults, so the host never duplicates them. The host writes the
 * result into control->params before the first run. Returns 0 for an unknown workload or a
 * geometry with no partition. */
int us_effective_params(uint32_t workload, uint64_t mem_size, uint32_t vcpus, const uint64_t *in, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif
