import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Native guests and child-process failover tests share 2 cores: keep workers few.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
