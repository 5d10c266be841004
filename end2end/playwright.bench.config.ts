import { defineConfig } from '@playwright/test';
import base from './playwright.config';

// The terminal benchmarks (bench/), run on their own: npx playwright test -c playwright.bench.config.ts
export default defineConfig({
  ...base,
  testDir: './bench',
  testMatch: /.*\.bench\.ts/,
  workers: 1,
});
