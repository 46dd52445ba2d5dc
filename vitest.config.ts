import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Integration tests build their own uniquely named namespaces, so files may run in parallel;
    // two cores, so two at a time keeps timing-sensitive transfers honest.
    maxWorkers: 2,
    pool: 'forks',
  },
});
