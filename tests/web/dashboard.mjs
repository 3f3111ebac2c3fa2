// Drives the dashboard in a real headless Chromium (playwright-core + Debian's
// chromium): start a run, see progress update live, stop it, resume it, open a story,
// check the themes view and a phone-width layout, saving screenshots.
// Usage: BASE_URL=http://127.0.0.1:PORT SHOT_DIR=test-artifacts [API_TOKEN=...] node dashboard.mjs
// Exit status 0 when every step passed; each failure is printed with the step name.
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.env.BASE_URL;
const shots = process.env.SHOT_DIR || "test-artifacts";
const token = process.env.API_TOKEN || "";
const llm = process.env.RUN_LLM || "";
if (!base) { console.error("BASE_URL is required"); process.exit(2); }
mkdirSync(shots, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), "feedline-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic"],
});
let failures = 0;
const page = browser.pages()[0] || await browser.newPage();
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));

async function step(name, fn) {
  try {
    await fn();
    console.log("ok   " + name);
  } catch (e) {
    failures++;
    console.log("FAIL " + name + ": " + (e && e.message ? e.message.split("\n")[0] : e));
    await page.screenshot({ path: join(shots, "failure-" + name.replace(/\W+/g, "-") + ".png") }).catch(() => {});
  }
}
const text = async (sel) => (await page.locator(sel).textContent()) || "";
async function waitFor(pred, what, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await pred()) return;
    await page.waitForTimeout(100);
  }
  throw new Error("timed out waiting for " + what);
}
const totalProgress = async () => {
  const nums = await page.locator("#live-phases .phase .n").allTextContents();
  return nums.reduce((a, n) => a + Number(n || 0), 0);
};

await step("page loads", async () => {
  await page.goto(base + "/", { waitUntil: "domcontentloaded" });
  await page.locator("h1", { hasText: "feedline" }).waitFor();
});

if (token) {
  await step("token is entered once and kept in session storage", async () => {
    await page.fill("#token", token);
    await page.click("#save-token");
    const kept = await page.evaluate(() => sessionStorage.getItem("feedline-token"));
    if (kept !== token) throw new Error("token not stored");
  });
}

await step("start a run and see progress update live", async () => {
  await page.check("#f-all");
  await page.fill("#f-conc", "4");
  await page.check("#f-stories");
  if (llm) await page.selectOption("#f-llm", llm);
  await page.click("#start-btn");
  await waitFor(async () => (await text("#live-status")) === "running", "the run to be running", 15000);
  const first = await totalProgress();
  await waitFor(async () => (await totalProgress()) > first, "progress to move", 20000);
  const second = await totalProgress();
  await waitFor(async () => (await totalProgress()) > second, "progress to move again", 20000);
  await page.screenshot({ path: join(shots, "01-run-progress.png") });
});

await step("stop the run", async () => {
  await page.click("#stop-btn");
  await waitFor(async () => (await text("#live-status")) === "stopped", "the run to stop", 20000);
  if (await page.locator("#resume-btn").isDisabled()) throw new Error("resume not offered");
  await page.screenshot({ path: join(shots, "02-run-stopped.png") });
});

await step("resume the run to completion", async () => {
  await page.click("#resume-btn");
  await waitFor(async () => ["running", "completed"].includes(await text("#live-status")), "the resume", 15000);
  await waitFor(async () => (await text("#live-status")) === "completed", "the run to complete", 240000);
  await page.locator("#history tr[data-run]").first().waitFor();
  await page.screenshot({ path: join(shots, "03-run-completed.png") });
});

await step("open a story with its evidence", async () => {
  await page.click("nav button[data-view=stories]");
  await page.locator("#stories .card").first().waitFor({ timeout: 15000 });
  await page.locator("#chart-sizes svg").waitFor();
  await page.screenshot({ path: join(shots, "04-stories.png") });
  await page.locator("#stories .card").first().click();
  await page.locator("#story-dialog[open] .evidence").first().waitFor({ timeout: 10000 });
  const n = await page.locator("#story-dialog .evidence").count();
  if (n < 3) throw new Error("a story shows " + n + " evidence conversations");
  await page.screenshot({ path: join(shots, "05-story-detail.png") });
  await page.click("#d-close");
});

await step("themes view with chart and filter", async () => {
  await page.click("nav button[data-view=themes]");
  await page.locator("#themes tr").first().waitFor();
  await page.locator("#chart-areas svg").waitFor();
  const area = (await page.locator("#themes tr td:nth-child(2)").first().textContent()).trim();
  await page.fill("#t-area", area);
  await page.click("#t-apply");
  await waitFor(async () => {
    const areas = await page.locator("#themes tr td:nth-child(2)").allTextContents();
    return areas.length > 0 && areas.every((a) => a.trim() === area);
  }, "the area filter", 10000);
  await page.screenshot({ path: join(shots, "06-themes.png") });
});

await step("an API error is shown, not swallowed", async () => {
  await page.click("nav button[data-view=runs]");
  await page.fill("#f-conc", "9999");
  await page.click("#start-btn");
  await page.locator("#error-banner").waitFor({ state: "visible", timeout: 10000 });
  const msg = await text("#error-banner");
  if (!/concurrency/.test(msg)) throw new Error("banner says: " + msg);
  await page.screenshot({ path: join(shots, "07-error-shown.png") });
});

await step("usable at phone width", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.locator("#history tr[data-run]").first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 2) {
    const wide = await page.evaluate(() => [...document.querySelectorAll("body *")]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
      .slice(0, 3).map((el) => el.tagName + (el.id ? "#" + el.id : "") + "." + el.className));
    throw new Error("page is " + overflow + " px wider than the screen: " + wide.join(", "));
  }
  await page.screenshot({ path: join(shots, "08-phone.png"), fullPage: true });
});

if (consoleErrors.length) {
  failures++;
  console.log("FAIL page errors: " + consoleErrors.join(" | "));
}
await browser.close();
rmSync(profile, { recursive: true, force: true });
console.log(failures ? `${failures} step(s) failed` : "all steps passed");
process.exit(failures ? 1 : 0);
