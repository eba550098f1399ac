/**
 * Seeded randomness for the arena: the same --seed gives every variant the same call schedule
 * (per session and server), so variants are compared on identical workloads.
 */

/** mulberry32: a small, fast 32-bit PRNG; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seed derived from a base seed and some integers (FNV-1a over their decimal forms). */
export function deriveSeed(base: number, ...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const ch of [base, ...parts].join(':')) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** An exponentially distributed delay with the given mean, clamped to [mean/20, 5 x mean]. */
export function exponentialDelay(random: () => number, meanMs: number): number {
  const x = -Math.log(1 - random()) * meanMs;
  return Math.min(5 * meanMs, Math.max(meanMs / 20, x));
}
