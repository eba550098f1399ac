/**
 * chromium: a page in a real headless Chromium (the Debian package, /usr/bin/chromium, driven by
 * playwright-core; `.ci/run` installs it), for checks of what the arena's HTML report looks like:
 * laid out, measured and screenshotted as a browser renders it, not as a string.
 *
 * The flags keep Chromium off the network (this machine's is closed).
 */
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { inflateSync } from 'node:zlib';
import { chromium, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** A fresh page in headless Chromium (a throwaway profile of its own), closed after the test. */
export async function chromiumPage(t: TestContext, viewport = { width: 1400, height: 900 }): Promise<Page> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `no Chromium at ${CHROMIUM}: install the Debian package chromium (.ci/run does), or set CHROMIUM_PATH`,
    );
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport });
  return page;
}

/**
 * Distinct colours in a PNG screenshot's pixels, sampled: a blank or unstyled render has a
 * handful, a rendered report with tables, colours and SVG timelines has many. Decodes the PNG
 * with zlib (8-bit RGB/RGBA, non-interlaced: what Chromium writes).
 */
export function distinctColours(png: Buffer, step = 7): number {
  let offset = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const data = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const colourType = data[9];
      if (data[8] !== 8 || data[12] !== 0) throw new Error('only 8-bit non-interlaced PNGs');
      channels = colourType === 6 ? 4 : colourType === 2 ? 3 : 0;
      if (channels === 0) throw new Error(`PNG colour type ${colourType} not handled`);
    }
    if (type === 'IDAT') idat.push(data);
    offset += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? (pixels[y * stride + x - channels] ?? 0) : 0;
      const b = y > 0 ? (pixels[(y - 1) * stride + x] ?? 0) : 0;
      const c = x >= channels && y > 0 ? (pixels[(y - 1) * stride + x - channels] ?? 0) : 0;
      const v = line[x] ?? 0;
      let out: number;
      if (filter === 0) out = v;
      else if (filter === 1) out = v + a;
      else if (filter === 2) out = v + b;
      else if (filter === 3) out = v + ((a + b) >> 1);
      else {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        out = v + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
      }
      pixels[y * stride + x] = out & 0xff;
    }
  }
  const colours = new Set<number>();
  for (let i = 0; i < width * height; i += step) {
    const p = i * channels;
    colours.add(((pixels[p] ?? 0) << 16) | ((pixels[p + 1] ?? 0) << 8) | (pixels[p + 2] ?? 0));
  }
  return colours.size;
}
