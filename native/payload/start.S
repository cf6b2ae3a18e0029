/*
 * Entry point of the bare-metal payload, at guest-physical 0x100000 (the linker script puts
 * .text.start first). The VMM starts each vCPU here in 64-bit long mode with RDI = guest memory
 * base (0, identity-mapped), RSI = vCPU index and RSP = the top of that vCPU's stack.
 *
 * Workload ids >= 0xF0 select the VMM's own test entries (native/payload/selftest.c); the rest
 * go to us_vcpu_main (native/workloads). The payload runs in ring 3 with IOPL 3; when the work is
 * done, one OUT to US_PORT_EXIT tells the VMM this vCPU has finished, and it never runs again
 * (the HLT loop after it is only a backstop: HLT in ring 3 faults, which the VMM reports).
 */
#define US_CONTROL_WORKLOAD 0x10008 /* offsetof(struct us_control, workload) + US_CONTROL_GPA */
#define US_PORT_EXIT 0x11
#define US_SELFTEST_FIRST 0xF0

  .section .text.start, "ax"
  .code64
  .globl _start
_start:
  movl US_CONTROL_WORKLOAD, %eax
  cmpl $US_SELFTEST_FIRST, %eax
  jb 1f
  call us_selftest_main
  jmp 2f
1:
  call us_vcpu_main
2:
  xorl %eax, %eax
  outb %al, $US_PORT_EXIT
3:
  hlt
  jmp 3b

  .section .note.GNU-stack, "", @progbits
