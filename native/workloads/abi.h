/*
 * The guest ABI: how a workload payload, the host (KVM VMM or simulated guest) and the
 * checkpoint engine share guest memory. Plain C, included by the freestanding KVM payload, by the
 * simulated guest and by the VMM, so the layout is one definition for all of them.
 *
 * Guest-physical layout (the KVM payload runs identity-mapped; the sim uses the same offsets
 * from the base of the memfd mapping):
 *
 *   0x000000 +------------------------------+
 *            | VMM private: GDT, IDT, TSS,  |  page tables (identity map of all RAM, 2 MiB or
 *            | page tables                  |  1 GiB pages). Unused by the sim.
 *   0x010000 +------------------------------+
 *            | us_control (one page)        |  config, per-vCPU state, ring indices, clock
 *   0x011000 +------------------------------+
 *            | output ring: US_RING_RECORDS |  records of 64 bytes; 64 KiB
 *            | x struct us_record           |
 *   0x021000 +------------------------------+
 *            | (free)                       |
 *   0x100000 +------------------------------+
 *            | payload image (code, data,   |  <= 1 MiB, KVM only
 *            | bss)                         |
 *   0x200000 +------------------------------+
 *            | vCPU stacks, 16 KiB each     |  KVM only (16 vCPUs max)
 *   0x400000 +------------------------------+
 *            | workload data region         |  to the end of guest memory
 *            +------------------------------+
 *
 * The output ring: the guest writes record `head % US_RING_RECORDS`, then publishes head+1
 * (release). If head - tail == US_RING_RECORDS the ring is full and the guest rings the doorbell
 * (KVM: `out` to US_PORT_DOORBELL; sim: a hook), after which the host has drained it. The host
 * drains at every pause, sets tail = head, and keeps `out_chain`, the hash chain of the last
 * record it drained, in the control page so that a memory image carries it.
 *
 * Pages the host itself writes (control page, ring indices) are not seen by the hardware dirty
 * log; the host adds them to the dirty set it reports.
 *
 * Contract details (shared by the sim, the KVM VMM and the payload; keep in step):
 * - Who writes what. The host fills the whole control page before the first run
 *   (guest::setup_control in native/guest/control.h: magic, config, params with defaults filled
 *   in, each vCPU's xoshiro256** state seeded by splitmix64). The guest then writes only
 *   vcpu[i] (its own), ring_head, next_seq, status (PANIC only) and panic_code. The host writes
 *   ring_tail and out_chain (when it drains), clock (while paused) and status = DONE (when every
 *   vCPU is done). Everything a workload needs to go on lives in guest memory: a memory image
 *   taken at a step boundary plus the host blob is the whole state.
 * - Record sequence numbers are ring positions: the record at monotonic position p has seq p,
 *   so next_seq == ring_head always. Only vCPU 0 emits records (so the order is deterministic
 *   with several vCPUs); the others work on their own partition of the data region.
 * - Data partition of vCPU i: part = ((mem_size - US_DATA_GPA) / vcpus) rounded down to a page;
 *   it starts at US_DATA_GPA + i * part. params[0] (working set, bytes) is per vCPU, <= part.
 * - params per workload (index: meaning; 0 in a field means "default", which the host replaces
 *   by the default before the run, see lib/guest/workloads.ts):
 *     all but kv   [7]: steps between output records (vCPU 0 emits one every that many steps
 *                       and after its last step)
 *     uniform      [0] working set bytes  [1] 8-byte writes per step
 *     hotset       [0] working set bytes  [1] writes per step  [2] hot set bytes
 *                  [3] percent of writes that go to the hot set
 *     sequential   [0] buffer bytes  [1] 8-byte words written per step (streaming, wraps)
 *     sparse       [0] working set bytes  [1] pages touched per step  [2] words per page
 *     memcheck     [0] region bytes  [1] pages rewritten per step (in sweep order)
 *                  [2] words of random data rewritten per page
 *     kv           [0] table bytes (64-byte slots, rounded down to a power of two)
 *                  [1] requests per step  [2] key space  [3] percent gets  [4] percent puts
 *                  (the rest are deletes); one output record per request
 *   The guest clamps every parameter into its valid range, so no control-page value can make
 *   it address memory outside its partition, the control page or the ring.
 * - Port I/O (KVM payload only; the sim calls host hooks instead): `out` of one byte to
 *   US_PORT_DOORBELL when the ring is full (the host drains, sets ring_tail, resumes);
 *   US_PORT_EXIT when this vCPU has finished (then it halts); a 32-bit `out` to US_PORT_PANIC
 *   with the low 32 bits of panic_code (the full code is in the control page) when the workload
 *   found corruption, after it set status = US_STATUS_PANIC.
 * - panic_code = (gpa of the bad page) | reason, reason in the low 12 bits: enum us_panic.
 */
#ifndef UNDERSTUDY_WORKLOADS_ABI_H
#define UNDERSTUDY_WORKLOADS_ABI_H

#include <stdint.h>

#define US_ABI_MAGIC 0x43475355u /* "USGC" little-endian */
#define US_ABI_VERSION 1u

#define US_PAGE_SIZE 4096u
#define US_CONTROL_GPA 0x10000u
#define US_RING_GPA 0x11000u
#define US_RING_RECORDS 1024u
#define US_PAYLOAD_GPA 0x100000u
#define US_PAYLOAD_MAX 0x100000u
#define US_STACKS_GPA 0x200000u
#define US_STACK_SIZE 0x4000u
#define US_DATA_GPA 0x400000u
#define US_MAX_VCPUS 16u
#define US_MIN_MEMORY (US_DATA_GPA + 0x400000u) /* 8 MiB */

#define US_PORT_DOORBELL 0x10u /* ring full: drain me */
#define US_PORT_EXIT 0x11u     /* this vCPU has finished */
#define US_PORT_PANIC 0x12u    /* the workload detected corruption; value = code */

#define US_RECORD_DATA 48u

enum us_workload {
  US_WL_UNIFORM = 1,
  US_WL_HOTSET = 2,
  US_WL_SEQUENTIAL = 3,
  US_WL_SPARSE = 4,
  US_WL_MEMCHECK = 5,
  US_WL_KV = 6,
};

enum us_flags {
  US_FLAG_NONDETERMINISTIC = 1u << 0,
};

enum us_panic {
  US_PANIC_TORN = 1,     /* memcheck: page checksum does not match its contents */
  US_PANIC_LOST = 2,     /* memcheck: page counter is not the one the sweep position implies */
  US_PANIC_DIRTY = 3,    /* memcheck: a page not yet written is not all zero */
};

enum us_status {
  US_STATUS_RUNNING = 0,
  US_STATUS_DONE = 1,
  US_STATUS_PANIC = 2,
};

struct us_record {
  uint64_t seq;              /* 0, 1, 2, ... across the whole run */
  uint32_t len;              /* bytes of data used, <= US_RECORD_DATA */
  uint32_t vcpu;             /* which vCPU wrote it */
  uint8_t data[US_RECORD_DATA];
};

struct us_vcpu_state {
  uint64_t step;             /* steps completed */
  uint64_t rng[4];           /* xoshiro256** state */
  uint64_t checksum;         /* running checksum of this vCPU's work */
  uint32_t done;             /* 1 once this vCPU has finished all its steps */
  uint32_t reserved0;
  uint64_t scratch[9];       /* workload-private (sequential: cursor; memcheck: cursor, pass;
                                kv: item count) */
};                           /* 128 bytes */

struct us_control {
  uint32_t magic;            /* US_ABI_MAGIC */
  uint32_t abi_version;      /* US_ABI_VERSION */
  uint32_t workload;         /* enum us_workload */
  uint32_t vcpus;            /* 1..US_MAX_VCPUS */
  uint64_t seed;
  uint64_t steps;            /* per vCPU */
  uint64_t mem_size;         /* bytes of guest RAM */
  uint64_t params[8];        /* workload parameters (working set, rate, ...) */
  uint32_t flags;            /* enum us_flags */
  uint32_t status;           /* enum us_status (written by the guest) */
  uint64_t clock;            /* host-supplied at each pause in nondeterministic mode */
  volatile uint64_t ring_head; /* records published by the guest (monotonic) */
  volatile uint64_t ring_tail; /* records consumed by the host (monotonic) */
  uint64_t next_seq;         /* guest's next record sequence number */
  uint64_t out_chain;        /* host: chain of the last drained record */
  uint64_t panic_code;
  uint64_t pause_id;         /* host: counts pauses (running -> paused); a CPU blob names its pause */
  uint64_t reserved[3];
  struct us_vcpu_state vcpu[US_MAX_VCPUS];
};

#ifdef __cplusplus
static_assert(sizeof(struct us_record) == 64, "us_record is 64 bytes");
static_assert(sizeof(struct us_vcpu_state) == 128, "us_vcpu_state is 128 bytes");
static_assert(sizeof(struct us_control) <= US_PAGE_SIZE, "us_control fits one page");
#else
_Static_assert(sizeof(struct us_record) == 64, "us_record is 64 bytes");
_Static_assert(sizeof(struct us_vcpu_state) == 128, "us_vcpu_state is 128 bytes");
_Static_assert(sizeof(struct us_control) <= US_PAGE_SIZE, "us_control fits one page");
#endif

#endif
