// Headless Chromium drive of the admin page (playwright-core, Debian's
// /usr/bin/chromium). Run by test_admin_browser.py:
//   node dashboard.js URL TOKEN EXT SHOT_DIR
// Prints "STEP <name>" lines the test synchronises on: after "STEP
// logged-in" the test registers EXT with SIPp; the page must then show the
// binding within 20 s. Exit 0 when every step passed.
"use strict";
const { chromium } = require("playwright-core");

const [url, token, ext, shots] = process.argv.slice(2);
const step = (s) => console.log("STEP " + s);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu",
      "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run"],
  });
  let code = 1;
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 },
      acceptDownloads: true });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url, { timeout: 15000 });
    await page.fill("#token", "wrong-token");
    await page.click("#login-form button");
    await page.waitForSelector("#login-error:has-text('refused')", { timeout: 10000 });
    step("bad-token-refused");
    await page.fill("#token", token);
    await page.click("#login-form button");
    const row = `#reg-table tr[data-ext="${ext}"]`;
    await page.waitForSelector(`${row} :text("not registered")`, { timeout: 10000 });
    step("logged-in");
    await page.waitForSelector(`${row} .badge.ok:has-text("registered")`, { timeout: 20000 });
    const text = await page.textContent(row);
    if (!/UDP from 127\.0\.0\.1:\d+/.test(text)) throw new Error("row: " + text);
    // push devices are wired: SIPp registers without pn-* parameters
    if (!/no push device/.test(text) || /not available/.test(text))
      throw new Error("push cell: " + text);
    step("registered-visible");
    await page.screenshot({ path: shots + "/registrations.png", fullPage: true });

    await page.click('nav a[data-tab="extensions"]');
    await page.fill("#add-number", "555");
    await page.fill("#add-name", "Browser Added");
    await page.click("#add-form button");
    await page.waitForSelector('#add-result:has-text("Added 555")', { timeout: 10000 });
    await page.click('#ext-table tr[data-ext="555"] button[data-act="prov"]');
    await page.waitForSelector("#prov:not([hidden])", { timeout: 10000 });
    await page.waitForFunction(() => {
      const i = document.querySelector("#prov-qr");
      return i.complete && i.naturalWidth > 0;
    }, null, { timeout: 10000 });
    console.log("PROV " + (await page.textContent("#prov-url")));
    step("qr-shown");
    await page.screenshot({ path: shots + "/extensions.png", fullPage: true });
    await page.click('nav a[data-tab="pushes"]');
    await page.waitForSelector("#push-table:not([hidden])", { timeout: 10000 });
    if (!(await page.isHidden("#pushes-na"))) throw new Error("pushes: not available shown");
    step("pushes-table");
    await page.click('nav a[data-tab="calls"]');
    await page.waitForSelector("#call-table:not([hidden])", { timeout: 10000 });
    await page.waitForSelector("#wake-table:not([hidden])", { timeout: 10000 });
    if (!(await page.isHidden("#calls-na"))) throw new Error("calls: not available shown");
    step("calls-table");
    // The header's backup button downloads a SQLite file (GET /api/backup).
    const [dl] = await Promise.all([
      page.waitForEvent("download", { timeout: 15000 }),
      page.click("#backup"),
    ]);
    const file = await dl.path();
    const head = require("fs").readFileSync(file).subarray(0, 16).toString("latin1");
    if (head !== "SQLite format 3\u0000") throw new Error("backup: not a database");
    if (!/^pushpbx-\d{8}-\d{6}\.db$/.test(dl.suggestedFilename()))
      throw new Error("backup name: " + dl.suggestedFilename());
    step("backup-downloaded");
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
    code = 0;
  } catch (e) {
    console.log("ERROR " + (e && e.message ? e.message : e));
  } finally {
    await browser.close();
  }
  process.exit(code);
})();
