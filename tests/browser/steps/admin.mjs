// Browser steps of the administration pages (helper `admin`): the back office, organization
// administration and single sign-on to SmartPlan Application. Each step takes the story's
// context `{ browser, base, appBase, page, shot }` and drives the pages like a person would
// (labels, roles and visible text), asserting what the person should see.

const JEREMY = 'jeremy.mills@citygroup.example';
const CITY_GROUP = 'City Group, Inc.';

function fail(message) {
  throw new Error(message);
}

async function expectText(page, text, what) {
  const body = await page.locator('body').innerText();
  if (!body.includes(text)) {
    fail(`${what}: expected to see "${text}" on ${page.url()}\n---\n${body.slice(0, 2000)}`);
  }
}

/** Opens an organization's administration (`/admin/orgs/{id}`) from the navigation. */
async function openOrgAdmin(ctx, orgName) {
  const { page, base } = ctx;
  await page.goto(`${base}/account`);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: orgName }).click();
  await page.waitForURL(/\/admin\/orgs\/[^/]+$/);
}

/** Finds a member on the users page and opens their page. */
async function openMember(ctx, orgName, email) {
  const { page } = ctx;
  await openOrgAdmin(ctx, orgName);
  await page.getByRole('link', { name: 'Users', exact: true }).click();
  await page.getByLabel('Name or email').fill(email);
  await page.getByRole('button', { name: 'Search' }).click();
  const row = page.getByRole('row').filter({ hasText: email });
  await row.getByRole('link').first().click();
  await page.waitForURL(/\/admin\/orgs\/[^/]+\/users\/[^/]+$/);
}

/**
 * Scott Long (signed in already) invites Jeremy Mills as City Group's contact person from the
 * back office organization page.
 */
export async function scottInvitesJeremy(ctx) {
  const { page, base } = ctx;
  await page.goto(`${base}/backoffice`);
  await page.getByRole('link', { name: 'Organizations', exact: true }).click();
  await page.getByLabel('Organization name').fill('City Group');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('link', { name: CITY_GROUP }).click();
  await page.waitForURL(/\/backoffice\/organizations\/[^/]+$/);
  await expectText(page, 'CON-2001', 'the organization page shows its contract');
  await page.getByLabel("Contact person's email").fill(JEREMY);
  await page.getByLabel('Given name').fill('Jeremy');
  await page.getByLabel('Family name').fill('Mills');
  await page.getByRole('checkbox', { name: 'Energy manager' }).check();
  await page.getByRole('button', { name: 'Send invitation' }).click();
  await expectText(page, `${JEREMY} is invited as the contact person of ${CITY_GROUP}`, 'the invitation is confirmed');
  await expectText(page, 'Contact person', 'the invitation is listed');
  await ctx.shot(page, 'backoffice-organization');
}

/**
 * From MySmartPlan (`/account`), opens SmartPlan Application: signed in there by SAML, the app
 * shows the person's name, organization and application roles.
 */
export async function openSmartPlanApp(ctx, expected = {}) {
  const { page, base, appBase } = ctx;
  const name = expected.name ?? 'Jeremy Mills';
  const organization = expected.organization ?? CITY_GROUP;
  const roles = expected.roles ?? ['consumption.read'];
  await page.goto(`${base}/account`);
  await page.getByRole('link', { name: 'Open SmartPlan Application' }).click();
  await page.waitForURL((url) => url.href.startsWith(appBase), { timeout: 15000 });
  await page.getByRole('heading', { name: `Welcome, ${name}` }).waitFor();
  await expectText(page, organization, 'the application names the organization');
  for (const role of roles) {
    await expectText(page, role, 'the application lists the role');
  }
  await ctx.shot(page, 'smartplan-app');
}

/** The contact person (signed in) invites `email` into `orgName` with the single invite form. */
export async function inviteMember(ctx, orgName, email) {
  const { page } = ctx;
  await openOrgAdmin(ctx, orgName);
  await page.getByRole('link', { name: 'Invitations', exact: true }).click();
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByRole('checkbox', { name: 'Energy manager' }).check();
  await page.getByRole('button', { name: 'Send invitation' }).click();
  await expectText(page, `invitation sent to ${email}`, 'the invitation is confirmed');
  // A small batch as well, for the per-line result table.
  const domain = email.split('@')[1];
  await page.getByLabel('CSV text').fill(
    `email,given_name,family_name,business_roles\n` +
      `batch.one@${domain},Batch,One,Energy manager\n` +
      `not-an-email,Bad,Line,\n` +
      `${email},Again,Invited,\n`,
  );
  await page.getByRole('button', { name: 'Invite everyone in the list' }).click();
  await page.getByRole('heading', { name: 'Result of the batch' }).waitFor();
  await expectText(page, 'Invalid email', 'the batch reports the bad line');
  await expectText(page, 'Already invited', 'the batch reports the person invited already');
  await ctx.shot(page, 'orgadmin-invitations');
  await page.getByRole('link', { name: 'Users', exact: true }).click();
  await ctx.shot(page, 'orgadmin-users');
}

/**
 * The contact person (signed in) delegates the management of `serviceName` in `orgName` to the
 * member with `email`.
 */
export async function delegateServiceManagement(ctx, orgName, email, serviceName) {
  const { page } = ctx;
  await openMember(ctx, orgName, email);
  const box = page.getByRole('checkbox', { name: `Service manager of ${serviceName}` });
  await box.check();
  await page.getByRole('button', { name: 'Save delegation' }).click();
  await expectText(page, 'delegation of', 'the delegation is confirmed');
  if (!(await page.getByRole('checkbox', { name: `Service manager of ${serviceName}` }).isChecked())) {
    fail('the delegation is not shown as given');
  }
  await ctx.shot(page, 'orgadmin-delegation');
}

/** Back office (signed in) approves the registration of `organizationName`. */
export async function approveRegistration(ctx, organizationName) {
  const { page, base } = ctx;
  await page.goto(`${base}/backoffice`);
  await page.getByRole('link', { name: 'Registrations', exact: true }).click();
  await page.getByRole('heading', { name: organizationName }).waitFor();
  await ctx.shot(page, 'backoffice-registrations');
  await page.getByRole('button', { name: `Approve ${organizationName}` }).click();
  await expectText(page, `${organizationName} is approved`, 'the approval is confirmed');
  await page.getByRole('link', { name: 'Audit log', exact: true }).click();
  await expectText(page, 'Events, newest first', 'the audit log is shown');
  await ctx.shot(page, 'audit-log');
}
