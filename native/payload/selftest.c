/*
 * The VMM's own test entries, selected by a workload id >= 0xF0 in the control page (never by
 * the public workload names). They exercise the KVM guest without the real workloads: faults of
 * each kind, a page toucher for dirty-log benchmarks, and a small deterministic mix of compute,
 * memory writes and output records for pause/resume and save/restore tests.
 *
 *   0xF0  ud2 (invalid opcode)            -> 'error' event naming #UD
 *   0xF1  write past the end of RAM        -> 'error' event (MMIO exit or #PF)
 *   0xF2  triple fault (zero the IDT, ud2) -> 'error' event
 *   0xF3  toucher: forever write one word in each of params[1] pages from data page params[0]
 *         at a stride of params[2] pages; vcpu[i].step counts completed passes
 *   0xF4  mix: `steps` steps of xorshift; write a word to a random page of this vCPU's part of
 *         the data region; every 16 steps emit a 16-byte output record (vCPU 0 only emits)
 *   0xF5  panic: OUT to US_PORT_PANIC with code 77
 *   0xF6  doorbells: `steps` OUTs to US_PORT_DOORBELL (measures the cost of one exit)
 */
#include "workloads/abi.h"

#define CTL ((volatile struct us_control *)(uintptr_t)US_CONTROL_GPA)
#define RING ((volatile struct us_record *)(uintptr_t)US_RING_GPA)

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }

__attribute__((weak)) void us_vcpu_main(uint8_t *mem, uint32_t vcpu) {
  (void)mem;
  (void)vcpu;
  outl(US_PORT_PANIC, 0xdead);
}

static void emit(uint32_t vcpu, const uint8_t *data, uint32_t len) {
  while (CTL->ring_head - CTL->ring_tail >= US_RING_RECORDS) outb(US_PORT_DOORBELL, 0);
  uint64_t head = CTL->ring_head;
  volatile struct us_record *r = &RING[head % US_RING_RECORDS];
  r->seq = CTL->next_seq;
  r->len = len;
  r->vcpu = vcpu;
  for (uint32_t i = 0; i < len; ++i) r->data[i] = data[i];
  CTL->next_seq = CTL->next_seq + 1;
  __atomic_store_n(&((struct us_control *)CTL)->ring_head, head + 1, __ATOMIC_RELEASE);
}

static void toucher(uint8_t *mem, uint32_t vcpu) {
  const uint64_t first = CTL->params[0], count = CTL->params[1], stride = CTL->params[2] ? CTL->params[2] : 1;
  volatile struct us_vcpu_state *st = &CTL->vcpu[vcpu];
  for (uint64_t pass = 1;; ++pass) {
    for (uint64_t i = vcpu; i < count; i += CTL->vcpus) {
      volatile uint64_t *w = (volatile uint64_t *)(mem + US_DATA_GPA + (first + i * stride) * US_PAGE_SIZE);
      *w = pass;
    }
    st->step = pass;
  }
}

static void mix(uint8_t *mem, uint32_t vcpu) {
  volatile struct us_vcpu_state *st = &CTL->vcpu[vcpu];
  const uint64_t pages = (CTL->mem_size - US_DATA_GPA) / US_PAGE_SIZE / CTL->vcpus;
  uint8_t *base = mem + US_DATA_GPA + (uint64_t)vcpu * pages * US_PAGE_SIZE;
  uint64_t x = st->rng[0];
  if (st->step == 0 && x == 0) x = CTL->seed * 0x9e3779b97f4a7c15ull + vcpu + 1;
  uint64_t sum = st->checksum;
  for (uint64_t s = st->step; s < CTL->steps; ++s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (CTL->flags & US_FLAG_NONDETERMINISTIC) x ^= CTL->clock;
    volatile uint64_t *w = (volatile uint64_t *)(base + (x % pages) * US_PAGE_SIZE + (x >> 52) * 8 % US_PAGE_SIZE);
    *w += x;
    sum = (sum ^ *w) * 0x100000001b3ull;
    st->rng[0] = x;
    st->checksum = sum;
    st->step = s + 1;
    if (vcpu == 0 && (s & 15) == 15) {
      uint8_t rec[16];
      for (int i = 0; i < 8; ++i) rec[i] = (uint8_t)(s >> (8 * i));
      for (int i = 0; i < 8; ++i) rec[8 + i] = (uint8_t)(sum >> (8 * i));
      emit(vcpu, rec, 16);
    }
  }
  st->done = 1;
}

void us_selftest_main(uint8_t *mem, uint32_t vcpu) {
  switch (CTL->workload) {
    case 0xF0:
      __asm__ volatile("ud2");
      break;
    case 0xF1:
      *(volatile uint64_t *)(mem + CTL->mem_size + 0x1000) = 1;
      break;
    case 0xF2: {
      /* The IDT (0x200..0x400, VMM-private) is mapped like all RAM: clear it, then fault. */
      volatile uint64_t *idt = (volatile uint64_t *)(mem + 0x200);
      for (int i = 0; i < 64; ++i) idt[i] = 0;
      __asm__ volatile("ud2");
      break;
    }
    case 0xF3:
      toucher(mem, vcpu);
      break;
    case 0xF4:
      mix(mem, vcpu);
      break;
    case 0xF5:
      outl(US_PORT_PANIC, 77);
      break;
    case 0xF6:
      for (uint64_t s = 0; s < CTL->steps; ++s) outb(US_PORT_DOORBELL, 0);
      break;
    default:
      outl(US_PORT_PANIC, 0xbad);
  }
}
