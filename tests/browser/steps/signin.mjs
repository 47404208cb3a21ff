// The sign-in part of the SmartPlan story: identifier first, password, SMS code, sign-out,
// and the dev mailbox and SMS outbox of demo mode. Each function drives the pages like a
// person (labels and button names) and takes (ctx, ...) with ctx = { page, base, shot, ... }.

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Waits until the browser has left the sign-in pages (signed in, sent on to `next`). */
async function waitUntilSignedIn(page) {
  await page.waitForURL((url) => !url.pathname.startsWith('/signin'), { timeout: 15000 });
}

/** Types the email and the password; leaves the page on the step after the password. */
async function emailAndPassword(ctx, email, password) {
  const { page } = ctx;
  await page.goto('/signin');
  await page.getByLabel('Email address').fill(email);
  await ctx.shot(page, 'signin');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.waitForURL('**/signin/password');
  await page.getByLabel('Password', { exact: true }).fill(password);
  await ctx.shot(page, 'password');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
}

/** Signs in with email and password (no second factor). The page ends on `/account`. */
export async function signIn(ctx, email, password) {
  await emailAndPassword(ctx, email, password);
  await waitUntilSignedIn(ctx.page);
}

/** Signs in with email, password and the SMS code sent to `phone` (read from /dev/sms). */
export async function signInWithSms(ctx, email, password, phone) {
  const { page } = ctx;
  await emailAndPassword(ctx, email, password);
  await page.waitForURL('**/signin/sms');
  await page.getByRole('button', { name: 'Send code' }).click();
  await page.getByLabel('Code from the SMS').waitFor();
  const code = await latestSmsCode(ctx, phone);
  await page.getByLabel('Code from the SMS').fill(code);
  await ctx.shot(page, 'sms-code');
  await page.getByRole('button', { name: 'Confirm' }).click();
  await waitUntilSignedIn(page);
}

/** Signs out with the header's "Sign out" button. The page ends on `/signin`. */
export async function signOut(ctx) {
  const { page } = ctx;
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL('**/signin');
  await page.getByText('You are signed out').waitFor();
}

/** Opens the dev mailbox and the newest message to `email`; the page ends on the message. */
export async function openLatestMailTo(ctx, email) {
  const { page } = ctx;
  await page.goto('/dev/mail');
  await page.getByRole('heading', { name: 'Dev mailbox' }).waitFor();
  await ctx.shot(page, 'dev-mailbox');
  const message = page.getByRole('link', { name: new RegExp(`to ${escapeRegExp(email)}$`, 'i') }).first();
  await message.click();
  await page.waitForURL(/\/dev\/mail\/\d+$/);
}

/** The newest code sent by SMS to `phone`, read from /dev/sms in a page of its own. */
export async function latestSmsCode(ctx, phone) {
  const outbox = await ctx.page.context().newPage();
  try {
    await outbox.goto('/dev/sms');
    const row = outbox.getByRole('row').filter({ hasText: phone }).first();
    const text = await row.innerText();
    const match = text.match(/(?<!\d)\d{6}(?!\d)/);
    if (!match) {
      throw new Error(`no code in the newest SMS to ${phone}: ${text}`);
    }
    return match[0];
  } finally {
    await outbox.close();
  }
}
