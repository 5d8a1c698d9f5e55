// The web view (GET /) in a real headless Chromium (Debian's /usr/bin/chromium
// driven by playwright-core; no browser is downloaded) against the real
// service: a lock shows within a second of being acquired, the waiter count
// and the hand-over show, the release removes it, and the page works on a
// phone-sized screen. Saves a screenshot (dist/test-artifacts/web-view.png;
// also docs/web-view.png with MCP_LOCKD_UPDATE_SCREENSHOT=1).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { LockClient } from "../../src/index.ts";
import { startServiceFixture, startServiceProcess, type ServiceFixture, type ServiceProcess } from "../helpers/service-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

const CHROMIUM = process.env.MCP_LOCKD_TEST_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("../../test-artifacts/", import.meta.url));
const DOCS_SCREENSHOT = fileURLToPath(new URL("../../../docs/web-view.png", import.meta.url));
const seconds = (s: number) => ({ seconds: s, nanos: 0 });

describe("web view", () => {
  let fx: ServiceFixture | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let base: string;

  before(async () => {
    [fx, browser] = await Promise.all([
      startServiceFixture(),
      // Running as root in CI containers: Chromium's sandbox needs user namespaces.
      chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] }),
    ]);
    base = `http://${fx.service.httpAddress}`;
    page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
  });
  after(async () => {
    await browser?.close();
    await fx?.close();
  });

  const rowOf = (resource: string) => page.locator(`tr[data-resource="${resource}"]`);
  const cellText = (resource: string, cls: string) => rowOf(resource).locator(`td.${cls}`).textContent();

  test("shows locks live: acquire within a second, waiters, hand-over, release", async () => {
    const raw = fx!.client;
    const early = (await raw.acquire({ resource: "deploy-prod", holder: "ci-job-4711", ttl: seconds(300) })).lease!;
    await page.goto(`${base}/`);
    await page.locator("#conn", { hasText: "LIVE" }).waitFor({ timeout: 5_000 });
    await page.locator("#store", { hasText: "OK" }).waitFor({ timeout: 5_000 });
    // The snapshot: held before the page opened.
    assert.equal(await cellText("deploy-prod", "holder"), "ci-job-4711");

    const lease = (await raw.acquire({ resource: "web-gateway", holder: "gateway-instance-1", ttl: seconds(30) })).lease!;
    const acquiredAt = Date.now();
    await rowOf("web-gateway").waitFor({ timeout: 1_000 });
    const shownAfterMs = Date.now() - acquiredAt;
    assert.ok(shownAfterMs <= 1_000, `shown ${shownAfterMs} ms after the acquire`);
    assert.equal(await cellText("web-gateway", "holder"), "gateway-instance-1");
    assert.equal(await cellText("web-gateway", "token"), String(lease.fencingToken));
    assert.equal(await cellText("web-gateway", "waiters"), "0");
    assert.equal(await cellText("web-gateway", "ttl"), "30s");
    assert.match((await cellText("web-gateway", "expires")) ?? "", /^(30|29|28)s$/);

    const waiting = raw.acquire({ resource: "web-gateway", holder: "gateway-instance-2", waitTimeout: seconds(30) });
    await page.waitForFunction(() => document.querySelector('tr[data-resource="web-gateway"] td.waiters')?.textContent === "1", undefined, { timeout: 1_000 });
    const other = (await raw.acquire({ resource: "nightly-backup", holder: "backup@db-2", ttl: seconds(3600) })).lease!;
    await rowOf("nightly-backup").waitFor({ timeout: 1_000 });

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}web-view.png`, fullPage: true });
    if (process.env.MCP_LOCKD_UPDATE_SCREENSHOT === "1") await copyFile(`${ARTIFACTS}web-view.png`, DOCS_SCREENSHOT);

    await raw.release(lease.leaseId);
    const second = (await waiting).lease!;
    await page.waitForFunction(
      () => document.querySelector('tr[data-resource="web-gateway"] td.holder')?.textContent === "gateway-instance-2",
      undefined,
      { timeout: 1_000 },
    );
    assert.equal(await cellText("web-gateway", "waiters"), "0");
    await page.locator("#feed li", { hasText: "HANDED_OVER web-gateway holder gateway-instance-2 (from gateway-instance-1)" }).waitFor({ timeout: 1_000 });

    await raw.release(second.leaseId);
    await rowOf("web-gateway").waitFor({ state: "detached", timeout: 1_000 });
    await page.locator("#feed li", { hasText: "RELEASED web-gateway" }).waitFor({ timeout: 1_000 });

    // Nothing secret reached the page.
    const html = await page.content();
    for (const id of [early.leaseId, lease.leaseId, second.leaseId, other.leaseId]) assert.ok(!html.includes(id), "a lease id reached the page");
    await raw.release(other.leaseId);
    await raw.release(early.leaseId);
  });

  test("fits a phone-sized screen: one card per lock, labelled cells, no sideways scrolling", async () => {
    const raw = fx!.client;
    const lease = (await raw.acquire({ resource: "phone-check", holder: "someone-with-a-rather-long-holder-name@build-host-17", ttl: seconds(60) })).lease!;
    const phone = await browser!.newPage({ viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
    try {
      await phone.goto(`${base}/`);
      await phone.locator('tr[data-resource="phone-check"]').waitFor({ timeout: 2_000 });
      const layout = await phone.evaluate(() => ({
        theadHidden: getComputedStyle(document.querySelector("thead")!).display === "none",
        cellLabel: getComputedStyle(document.querySelector('tr[data-resource="phone-check"] td.holder')!, "::before").content,
        scrollWidth: document.documentElement.scrollWidth,
        width: window.innerWidth,
      }));
      assert.ok(layout.theadHidden, "the header row gives way to labels");
      assert.match(layout.cellLabel, /Holder/);
      assert.ok(layout.scrollWidth <= layout.width, `no sideways scrolling: ${layout.scrollWidth} > ${layout.width}`);
      await phone.screenshot({ path: `${ARTIFACTS}web-view-phone.png` });
    } finally {
      await phone.close();
      await raw.release(lease.leaseId);
    }
  });
});

describe("web view with --auth-file", () => {
  const READER = "reader-token-for-the-web-view";
  const WRITER = "writer-token-for-the-web-view";
  const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
  let temp: { path: string; remove(): Promise<void> } | undefined;
  let service: ServiceProcess | undefined;
  let browser: Browser | undefined;

  before(async () => {
    temp = await makeTempDir();
    const authPath = join(temp.path, "auth.json");
    await writeFile(
      authPath,
      JSON.stringify({
        principals: [
          { name: "viewer", token_sha256: sha256(READER), grants: [{ resource_prefix: "", actions: ["read"] }] },
          { name: "deployer", token_sha256: sha256(WRITER), grants: [{ resource_prefix: "", actions: ["lock"] }] },
        ],
      }),
    );
    [service, browser] = await Promise.all([
      startServiceProcess({ lockDir: join(temp.path, "locks"), extraArgs: ["--auth-file", authPath] }),
      chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] }),
    ]);
  });
  after(async () => {
    await browser?.close();
    await service?.stop();
    await temp?.remove();
  });

  test("the page asks for a token once, keeps it for the session, and shows locks only with read", async () => {
    const page = await browser!.newPage();
    const writer = new LockClient({ address: service!.grpcAddress, token: WRITER });
    try {
      // /events without a token is refused; the page asks for one.
      assert.equal((await fetch(`http://${service!.httpAddress}/events`)).status, 401);
      await page.goto(`http://${service!.httpAddress}/`);
      await page.locator("#auth").waitFor({ state: "visible", timeout: 5_000 });
      assert.match((await page.locator("#conn").textContent()) ?? "", /NEEDS A TOKEN/);

      // A token without read (the deployer's) is refused too: asked again.
      await page.fill("#token", WRITER);
      await page.click('#auth button[type="submit"]');
      await page.locator("#auth").waitFor({ state: "visible", timeout: 5_000 });

      await page.fill("#token", READER);
      await page.click('#auth button[type="submit"]');
      await page.locator("#conn", { hasText: "LIVE" }).waitFor({ timeout: 5_000 });
      const lock = await writer.acquire("guarded-deploy", { ttl: 30_000 });
      await page.locator('tr[data-resource="guarded-deploy"]').waitFor({ timeout: 1_000 });

      // Kept for the browser session (sessionStorage), never put in a URL.
      await page.reload();
      await page.locator('tr[data-resource="guarded-deploy"]').waitFor({ timeout: 5_000 });
      assert.ok(!page.url().includes(READER), "the token is never in a URL");
      await lock.release();
    } finally {
      writer.close();
      await page.close();
    }
  });
});
