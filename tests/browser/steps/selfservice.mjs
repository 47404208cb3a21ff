// The self-service part of the SmartPlan story: accepting an invitation, enrolling a phone
// (and a look at the authenticator-app page), and registering an organization. Each function
// drives the pages like a person (labels and button names) and takes (ctx, ...) with
// ctx = { browser, context, base, appBase, page, shot }.
import { latestSmsCode } from './signin.mjs';

/** The newest 6-digit code emailed to `email`, read from /dev/mail in a page of its own. */
async function latestMailCode(ctx, email) {
  const mailbox = await ctx.page.context().newPage();
  try {
    await mailbox.goto('/dev/mail');
    const escaped = email.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    await mailbox.getByRole('link', { name: new RegExp(`to ${escaped}$`, 'i') }).first().click();
    await mailbox.waitForURL(/\/dev\/mail\/\d+$/);
    const text = await mailbox.locator('main').innerText();
    const match = text.match(/(?<!\d)\d{6}(?!\d)/);
    if (!match) {
      throw new Error(`no code in the newest mail to ${email}: ${text.slice(0, 500)}`);
    }
    return match[0];
  } finally {
    await mailbox.close();
  }
}

/**
 * Accepts the invitation whose mail is open (the page is on the message): follows the link,
 * sets the name and a password, and submits. The page ends on /account, or on the sign-in's
 * enrolment step (/signin/enrol, no session yet) when the organization requires a second factor.
 */
export async function acceptInvitation(ctx, { givenName, familyName, password }) {
  const { page } = ctx;
  await page.getByRole('link', { name: /\/invitations\/accept\?token=/ }).first().click();
  await page.waitForURL(/\/invitations\/accept\?token=/);
  await page.getByRole('heading', { level: 1, name: /^Join / }).waitFor();
  if (givenName) await page.getByLabel('Given name').fill(givenName);
  if (familyName) await page.getByLabel('Family name').fill(familyName);
  await page.getByLabel('Choose a password').fill(password);
  await page.getByLabel('Type the password again').fill(password);
  await page.evaluate(() => window.scrollTo(0, 0));
  await ctx.shot(page, 'invitation-acceptance');
  await page.getByRole('button', { name: 'Accept and join' }).click();
  await page.waitForURL((url) => url.pathname === '/account' || url.pathname === '/signin/enrol');
  if (new URL(page.url()).pathname === '/account') {
    await ctx.shot(page, 'account');
  }
}

/**
 * Sets up the mobile phone `phone` (E.164), the SMS code read from /dev/sms: at the sign-in's
 * enrolment step when the page is there (the organization requires a second factor: the code
 * also finishes signing in), else on /account/phone. Then looks at the authenticator-app page.
 * The page ends on /account.
 */
export async function enrollPhone(ctx, phone) {
  const { page } = ctx;
  const atSignIn = new URL(page.url()).pathname === '/signin/enrol';
  if (atSignIn) {
    await page.getByRole('link', { name: 'Use your mobile phone instead' }).click();
    await page.waitForURL((url) => url.pathname === '/signin/enrol/phone');
  } else if (new URL(page.url()).pathname !== '/account/phone') {
    await page.goto('/account/phone');
  }
  await page.getByLabel('Mobile number').fill(phone);
  await ctx.shot(page, 'phone-enrolment');
  await page.getByRole('button', { name: 'Send code' }).click();
  await page.getByLabel('Code sent by SMS').waitFor();
  const code = await latestSmsCode(ctx, phone);
  await page.getByLabel('Code sent by SMS').fill(code);
  await page.getByRole('button', { name: atSignIn ? 'Confirm and sign in' : 'Confirm the number' }).click();
  await page.waitForURL((url) => url.pathname === '/account');
  await page.getByText('is verified').waitFor();
  await ctx.shot(page, 'account');

  // The authenticator-app page: the QR code and the key (not confirmed here; the phone is the
  // second factor of the story).
  await page.goto('/account/mfa');
  await page.getByRole('button', { name: /authenticator app/ }).click();
  await page.getByRole('img', { name: /QR code/ }).waitFor();
  await ctx.shot(page, 'mfa');
  await page.goto('/account');
}

/**
 * Registers an organization on /register, confirms the codes sent to the email (read from
 * /dev/mail) and the phone (from /dev/sms). The page ends on "Waiting for approval".
 */
export async function registerOrganization(ctx, { organization, givenName, familyName, email, phone, password }) {
  const { page } = ctx;
  await page.goto('/register');
  await page.getByLabel('Organization name').fill(organization);
  await page.getByLabel('Given name').fill(givenName);
  await page.getByLabel('Family name').fill(familyName);
  await page.getByLabel('Work email address').fill(email);
  if (phone) await page.getByLabel('Mobile phone').fill(phone);
  await page.getByLabel('Choose a password').fill(password);
  await page.getByLabel('Type the password again').fill(password);
  await page.evaluate(() => window.scrollTo(0, 0));
  await ctx.shot(page, 'registration');
  await page.getByRole('button', { name: 'Register' }).click();
  await page.waitForURL(/\/register\/verify\?registration=/);
  await page.getByLabel('Code from the email').fill(await latestMailCode(ctx, email));
  if (phone) {
    await page.getByLabel('Code from the SMS').fill(await latestSmsCode(ctx, phone));
  }
  await page.getByRole('button', { name: 'Confirm', exact: true }).click();
  await page.getByRole('heading', { name: 'Waiting for approval' }).waitFor();
}
