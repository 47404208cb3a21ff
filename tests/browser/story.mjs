// The SmartPlan story end to end, in a real browser, against `smartplan demo` (started by the
// Rust harness examples/smartplan/tests/server/browser.rs, which sets SMARTPLAN_BASE,
// SMARTPLAN_APP_BASE and SHOTS_DIR). Each step is a person doing something on the pages; the
// steps live in steps/*.mjs, one file per area of the site.
import assert from 'node:assert/strict';
import { launch, person, settings, walk } from './lib.mjs';
import * as signin from './steps/signin.mjs';
import * as selfservice from './steps/selfservice.mjs';
import * as admin from './steps/admin.mjs';

const PASSWORD = 'harbour-lantern-2026';
const SCOTT = 'scott.long@smartplan.example';
const BETTY = 'betty.office@smartplan.example';
const JEREMY = 'jeremy.mills@citygroup.example';
const JEREMY_PASSWORD = 'chooses-a-long-passphrase-of-his-own';
const JEREMY_PHONE = '+15555550123';
const ANNA = 'anna.berg@citygroup.example';
const ANNA_PASSWORD = 'picks-her-own-quiet-passphrase';
const KARL = 'karl.kearnes@kokomedia.example';
const KARL_PASSWORD = 'registers-a-new-company-today';
const CITY_GROUP = 'City Group, Inc.';
const KOKO = 'KOKO Media Inc.';

const config = settings();
const browser = await launch();
const people = {};
const as = async (who) => {
  if (!people[who]) people[who] = await person(browser, config, who);
  return people[who];
};

const steps = [
  ['Scott Long signs in', async () => signin.signIn(await as('scott'), SCOTT, PASSWORD)],
  ['Scott invites Jeremy Mills as City Group\'s contact person', async () => admin.scottInvitesJeremy(await as('scott'))],
  ['Scott signs out', async () => signin.signOut(await as('scott'))],
  ['Jeremy opens the invitation mail', async () => signin.openLatestMailTo(await as('jeremy'), JEREMY)],
  ['Jeremy accepts and sets a password', async () =>
    selfservice.acceptInvitation(await as('jeremy'), { givenName: 'Jeremy', familyName: 'Mills', password: JEREMY_PASSWORD })],
  ['Jeremy enrolls his phone', async () => selfservice.enrollPhone(await as('jeremy'), JEREMY_PHONE)],
  ['Jeremy signs out', async () => signin.signOut(await as('jeremy'))],
  ['Jeremy signs in with password and SMS code', async () =>
    signin.signInWithSms(await as('jeremy'), JEREMY, JEREMY_PASSWORD, JEREMY_PHONE)],
  ['Jeremy opens SmartPlan Application, signed in by SAML', async () => admin.openSmartPlanApp(await as('jeremy'))],
  ['Jeremy invites a colleague', async () => admin.inviteMember(await as('jeremy'), CITY_GROUP, ANNA)],
  ['Anna opens the invitation mail', async () => signin.openLatestMailTo(await as('anna'), ANNA)],
  ['Anna accepts', async () =>
    selfservice.acceptInvitation(await as('anna'), { givenName: 'Anna', familyName: 'Berg', password: ANNA_PASSWORD })],
  ['Anna enrolls her phone (City Group requires a second factor)', async () => selfservice.enrollPhone(await as('anna'), '+15555550188')],
  ['Jeremy delegates the management of SmartPlan Application to Anna', async () =>
    admin.delegateServiceManagement(await as('jeremy'), CITY_GROUP, ANNA, 'SmartPlan Application')],
  ['Karl Kearnes registers KOKO Media', async () =>
    selfservice.registerOrganization(await as('karl'), {
      organization: KOKO, givenName: 'Karl', familyName: 'Kearnes', email: KARL, phone: '+15555550177', password: KARL_PASSWORD,
    })],
  ['Betty Office signs in', async () => signin.signIn(await as('betty'), BETTY, PASSWORD)],
  ['Betty approves KOKO Media', async () => admin.approveRegistration(await as('betty'), KOKO)],
  ['Karl signs in and sees KOKO Media', async () => {
    const karl = await as('karl');
    await signin.signIn(karl, KARL, KARL_PASSWORD);
    await karl.page.goto('/account');
    assert.match(await karl.page.locator('main').innerText(), /KOKO Media/);
  }],
];

const ok = await walk(steps, async () => {
  for (const [who, p] of Object.entries(people)) {
    console.log(`--- ${who} was at ${p.page.url()}`);
    console.log((await p.page.locator('body').innerText()).slice(0, 1500));
    await p.shot(p.page, `failure-${who}`);
  }
});
await browser.close();
process.exit(ok ? 0 : 1);
