// Drives the dashboard in a real headless Chromium (playwright-core + Debian's
// chromium): start a run, see progress update live, stop it, resume it, read the run's
// review summary, open a story (state, review, description, history), close it, export
// the run's stories to markdown, check the themes view and a phone-width layout,
// saving screenshots. The server must run in a scratch directory: the markdown export
// writes stories.md into its working directory.
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
// The API itself, to check what the page did (with the session's token, if any).
async function apiGet(path) {
  const res = await fetch(base + path, { headers: token ? { Authorization: "Bearer " + token } : {} });
  if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
  return res.json();
}
let storyId = null;
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

await step("the run view shows created/grown stories and the review summary", async () => {
  await page.locator("#live-review-counts").waitFor({ timeout: 15000 });
  const counts = await text("#live-story-counts");
  if (!/\d+ created, \d+ grown/.test(counts)) throw new Error("story counts say: " + counts);
  const review = await text("#live-review-counts");
  if (!/kept/.test(review) || !/[1-9]\d* rejected/.test(review)) throw new Error("review summary says: " + review);
  const rejected = page.locator("#live-review tr[data-decision=reject]");
  if ((await rejected.count()) < 1) throw new Error("no rejected decision listed");
  const row = await rejected.allTextContents();
  if (!row.some((r) => /training_request/.test(r) && /route|referral|professional services/i.test(r)))
    throw new Error("the rejected training_request candidate and its reason are not listed: " + row.join(" | "));
  await page.locator("#live").screenshot({ path: join(shots, "03b-run-review.png") });
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

await step("a story shows its state, kind, review, description and history", async () => {
  const card = page.locator("#stories .card").first();
  storyId = Number(await card.getAttribute("data-story"));
  if ((await card.locator(".state-badge").textContent()) !== "open") throw new Error("the card shows no open state");
  await card.click();
  await page.locator("#story-dialog[open] #d-desc h4").first().waitFor({ timeout: 10000 });
  if ((await text("#d-badges .state-badge")) !== "open") throw new Error("state badge: " + (await text("#d-badges")));
  if (!/bug|feature|question/.test(await text("#d-badges"))) throw new Error("no kind: " + (await text("#d-badges")));
  if (!/\d+ conversations \(.+\)/.test(await text("#d-meta"))) throw new Error("no count and date range: " + (await text("#d-meta")));
  const review = await text("#d-review");
  if (!/keep|split|merge/.test(review)) throw new Error("review section says: " + review);
  const heads = await page.locator("#d-desc h4").allTextContents();
  for (const h of ["Problem", "Who is affected", "Evidence", "Review"])
    if (!heads.includes(h)) throw new Error("description lacks " + h + ": " + heads.join(", "));
  if ((await page.locator("#d-desc li").count()) < 1) throw new Error("description has no list items");
  if (await page.locator("#d-desc").evaluate((el) => /(^|\n)##|\*\*/.test(el.textContent)))
    throw new Error("raw markdown is shown");
  if (!/created in run \d+/.test(await text("#d-runs"))) throw new Error("history says: " + (await text("#d-runs")));
  if (!/Not exported/.test(await text("#d-exports"))) throw new Error("tickets say: " + (await text("#d-exports")));
  if (await page.locator("#d-state-reopen").isVisible()) throw new Error("Reopen offered on an open story");
  await page.setViewportSize({ width: 1280, height: 1400 });
  await page.screenshot({ path: join(shots, "05b-story-dialog.png") });
  await page.setViewportSize({ width: 1280, height: 800 });
});

await step("close a story from its dialog", async () => {
  await page.click("#d-state-reject");
  await page.click("#d-reason-ok");
  if (!/reason is required/.test(await text("#d-state-msg"))) throw new Error("reject without a reason was not refused");
  await page.click("#d-reason-cancel");
  await page.click("#d-state-close");
  await page.fill("#d-reason", "fixed in 4.2 (browser test)");
  await page.click("#d-reason-ok");
  await waitFor(async () => (await text("#d-badges .state-badge")) === "closed", "the dialog to show closed", 10000);
  if (!/fixed in 4\.2/.test(await text("#d-state-line"))) throw new Error("state line: " + (await text("#d-state-line")));
  if (!(await page.locator("#d-state-reopen").isVisible())) throw new Error("Reopen not offered");
  await page.screenshot({ path: join(shots, "05c-story-closed.png") });
  await page.click("#d-close");
  const badge = await text(`#stories .card[data-story="${storyId}"] .state-badge`);
  if (badge !== "closed") throw new Error("the card shows " + badge);
  const s = await apiGet(`/api/stories/${storyId}`);
  if (s.status !== "closed" || s.state_reason !== "fixed in 4.2 (browser test)")
    throw new Error(`the API has the story ${s.status} (${s.state_reason})`);
});

await step("export the run's stories to markdown", async () => {
  await page.selectOption("#x-to", "jira");
  await page.click("#x-btn");
  await page.locator("#x-error").waitFor({ timeout: 10000 });
  if (!/JIRA_[A-Z_]+ is not set/.test(await text("#x-error"))) throw new Error("jira without settings says: " + (await text("#x-error")));
  await page.selectOption("#x-to", "markdown");
  await page.uncheck("#x-dry");
  await page.click("#x-btn");
  await page.locator("#x-status[data-status=completed]").waitFor({ timeout: 30000 });
  if (await page.locator("#x-error").count()) throw new Error("an error is still shown");
  const created = await page.locator("#x-result tr[data-action=created]").count();
  if (created < 1) throw new Error("no story created: " + (await text("#x-result")));
  const closed = await page.locator(`#x-result tr[data-story="${storyId}"]`).getAttribute("data-action");
  if (closed !== "skipped") throw new Error("the closed story was " + closed);
  if (!/\d+ created/.test(await text("#x-status"))) throw new Error("summary says: " + (await text("#x-status")));
  await page.screenshot({ path: join(shots, "05d-export-markdown.png"), fullPage: true });
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
  await page.click("nav button[data-view=stories]");
  await page.locator("#stories .card").first().waitFor({ timeout: 15000 });
  const storiesOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (storiesOverflow > 2) throw new Error("the stories view is " + storiesOverflow + " px wider than the screen");
  await page.screenshot({ path: join(shots, "08b-phone-stories.png") });
});

if (consoleErrors.length) {
  failures++;
  console.log("FAIL page errors: " + consoleErrors.join(" | "));
}
await browser.close();
rmSync(profile, { recursive: true, force: true });
console.log(failures ? `${failures} step(s) failed` : "all steps passed");
process.exit(failures ? 1 : 0);
