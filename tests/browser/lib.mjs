// The browser harness of the SmartPlan story: Debian's chromium driven by playwright-core.
// Each person of the story gets their own browser context (their own cookies), like their own
// computer. `shot(page, name)` saves a screenshot as SHOTS_DIR/NAME.png.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];

/** Starts chromium (CHROMIUM overrides /usr/bin/chromium). */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
}

/** The story's settings, from the environment the Rust harness sets. */
export function settings() {
  const base = process.env.SMARTPLAN_BASE;
  const appBase = process.env.SMARTPLAN_APP_BASE;
  if (!base || !appBase) {
    throw new Error('set SMARTPLAN_BASE and SMARTPLAN_APP_BASE (the demo and the app URLs)');
  }
  const shots = process.env.SHOTS_DIR || 'screenshots';
  mkdirSync(shots, { recursive: true });
  return { base, appBase, shots };
}

/** A person at their own computer: a fresh browser context and page. */
export async function person(browser, { base, appBase, shots }, who) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, baseURL: base });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  const shot = async (onPage, name) => {
    await onPage.screenshot({ path: join(shots, `${name}.png`), fullPage: false });
  };
  return { browser, context, base, appBase, page, shot, who };
}

/** Runs the named steps in order, printing each with its time; exits 1 on the first failure. */
export async function walk(steps, onFailure) {
  for (const [name, step] of steps) {
    const started = Date.now();
    try {
      await step();
      console.log(`ok   ${name} (${Date.now() - started} ms)`);
    } catch (error) {
      console.log(`FAIL ${name}: ${error && error.stack ? error.stack : error}`);
      if (onFailure) {
        try { await onFailure(name); } catch (inner) { console.log(`(failure report failed: ${inner})`); }
      }
      return false;
    }
  }
  return true;
}
