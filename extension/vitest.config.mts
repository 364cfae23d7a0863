import { defineConfig } from 'vitest/config';

// Pure-logic tests (payload checks, layout, formatting): no DOM needed.
export default defineConfig({
  test: { include: ['tests/**/*.test.ts'], environment: 'node' }
});
