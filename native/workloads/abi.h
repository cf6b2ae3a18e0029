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
  uint64_t scratch[9];       /* workload-private */
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
  uint64_t reserved[4];
  struct us_vcpu_state vcpu[US_MAX_VCPUS];
};

#endif
