"""What a person sees, in real Chromium (Debian's, driven by Playwright) against a live hub with
real workers. Screenshots land in test-artifacts/ for people to look at."""

import os
import shutil
import time
from pathlib import Path

import pytest

from tests import factories
from tests.helpers import ROOT

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("HUB_REQUIRE_SERVICES") == "1":
            pytest.fail("HUB_REQUIRE_SERVICES=1 but Chromium is not installed")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # still plain synchronous code, so Django's async-context guard does not apply to them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def signed_in(browser, hub_url: str, username: str):
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    # The live hub runs on the base settings, whose hashers do not include the tests' fast one.
    User.objects.filter(username=username).update(
        password=make_password(factories.PASSWORD, hasher="pbkdf2_sha256")
    )
    page = new_page(browser)
    page.goto(f"{hub_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", factories.PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs/")
    return page


# Every page records what its Content-Security-Policy blocked: a test that ends with anything
# recorded fails (assert_no_csp_violations), so the policy is tested wherever pages are.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def new_page(browser, **options):
    options = {"viewport": {"width": 1280, "height": 900}, "accept_downloads": True, **options}
    context = browser.new_context(**options)
    context.add_init_script(RECORD_VIOLATIONS)
    return context.new_page()


def assert_no_csp_violations(page) -> None:
    assert page.evaluate("window.__cspViolations || []") == []


def wait_until(page, expression: str, timeout: float) -> None:
    """Wait for a condition on the page, read with page.evaluate: Playwright's
    wait_for_function evaluates strings with eval, which the hub's policy rightly forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression} still false after {timeout} s")
        page.wait_for_timeout(100)


def shot(page, name: str) -> None:
    """A screenshot of what a person sees, after checking the policy blocked nothing on it."""
    assert_no_csp_violations(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_customization_job_submitted_from_the_page_trains_live_to_ready(
    browser, hub_env, alice, tmp_path
):
    hub = hub_env["HUB_URL"]
    factories.dataset(alice, records=300, name="numbers")
    page = signed_in(browser, hub, "alice")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{hub}/jobs/new/customization/")
    page.fill("#id_epochs", "0")
    page.click("button[type=submit]")
    assert "epochs must be a whole number ≥ 1" in page.inner_text(
        ".errorlist"
    )  # a form error, nothing submitted
    page.select_option("#id_finetuning_type", "lora")
    page.fill("#id_epochs", "60")
    page.fill("#id_learning_rate", "0.01")
    page.fill("#id_adapter_dim", "16")
    page.fill("#id_alpha", "32")
    page.fill("#id_early_stopping_patience", "0")
    page.fill("#id_name", "watch me train")
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs/j*/")
    page.evaluate("window.sameDocument = true")  # gone if the page ever reloads
    page.wait_for_selector("#live[data-state=live]")

    # Training shows up without a reload: progress, chart points, timeline.
    wait_until(page, "window.hubJobState.series.train_loss.length > 60", timeout=90)
    assert page.inner_text("#status-badge") == "RUNNING"
    assert page.inner_text("#timeline").count("RUNNING") == 1
    # The base model's completions of validation prompts, before training; after it, later.
    samples = page.locator("#samples tr")
    assert samples.count() == 3 and "… training" in samples.first.inner_text()
    assert page.inner_text("[data-field=ran_on]") == "cpu (1 thread)"
    shot(page, "job-running")

    # Zoom in on the chart by dragging across it, as a person would; new points keep coming and
    # the zoom stays.
    area = page.locator("#chart .nsewdrag").bounding_box()
    y = area["y"] + area["height"] / 2
    page.mouse.move(area["x"] + area["width"] * 0.05, y)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.3, y, steps=8)
    page.mouse.up()
    zoomed = page.evaluate("document.getElementById('chart')._fullLayout.xaxis.range.slice()")
    points = page.evaluate("window.hubJobState.series.train_loss.length")
    wait_until(page, f"window.hubJobState.series.train_loss.length > {points + 50}", timeout=60)
    assert (
        page.evaluate("document.getElementById('chart')._fullLayout.xaxis.range.slice()") == zoomed
    )
    shot(page, "job-zoomed")

    page.wait_for_selector("#status-badge .status-ready", timeout=120_000)
    assert page.evaluate("window.sameDocument") is True
    assert page.inner_text("[data-field=epochs_completed]") == "60"
    assert page.inner_text("#pct") == "100.0%"
    timeline = page.inner_text("#timeline")
    for status in ("PENDING", "RUNNING", "COMPLETED", "READY"):
        assert status in timeline
    assert "… training" not in page.inner_text("#samples")  # the trained model's completions
    with page.expect_download() as download:
        page.click("#download-target")
    saved = tmp_path / "merged.zip"
    download.value.save_as(saved)
    import zipfile

    assert {"config.json", "model.safetensors"} <= set(zipfile.ZipFile(saved).namelist())
    assert "adapter.zip" in page.inner_text("#artifact-list")
    assert "model.onnx" in page.inner_text("#artifact-list")
    shot(page, "job-ready")

    # A reload shows what the live page showed: the results, the best epoch's marker.
    results_live = page.inner_text("#artifact-list")
    marker = "(document.getElementById('chart').layout.annotations || []).map((a) => a.text)"
    marker_live = page.evaluate(marker)
    assert any("best epoch" in text for text in marker_live), marker_live
    page.reload()
    page.wait_for_selector("#live[data-state=live]")
    wait_until(page, f"{marker}.length > 0", 30)
    assert page.inner_text("#artifact-list") == results_live
    assert page.evaluate(marker) == marker_live
    assert "those of the best epoch" in page.inner_text("#best-note")

    # The merged model's own page: what it is, where it came from.
    page.click("#artifact-list a:has-text('Hugging Face model')")
    page.wait_for_selector("#model-facts")
    facts = page.inner_text("#model-facts")
    for fact in ("LlamaForCausalLM", "parameters", "256 tokens", "lora from tiny-llama"):
        assert fact in facts, fact
    assert "model.safetensors" in page.inner_text("#model-files")
    shot(page, "model-page")
    page.goto(f"{hub}/jobs/models/")
    assert "Hugging Face model" in page.inner_text("#models")
    shot(page, "model-list")
    page.goto(f"{hub}/jobs/")
    page.wait_for_selector("#live[data-state=live]")
    assert "watch me train" in page.inner_text("#job-table")
    shot(page, "job-list")
    assert errors == []


def test_the_job_list_shows_a_new_job_without_a_reload(browser, hub_env, alice):
    hub = hub_env["HUB_URL"]
    page = signed_in(browser, hub, "alice")
    page.wait_for_selector("#live[data-state=live]")
    job = factories.link_job(alice)  # submitted elsewhere (the API, the client)
    page.wait_for_selector(f'tr[data-job="{job.public_id}"]', timeout=30_000)
    page.wait_for_selector(f'tr[data-job="{job.public_id}"] .status-ready', timeout=60_000)


def test_a_reader_sees_only_what_a_reader_can_do(browser, hub_env, alice, bob):
    """The owner's buttons (Cancel, Resubmit, Rename, Sharing) are the owner's: a reader's page,
    at desktop and phone width, shows none of them."""
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    job = factories.unqueued_job(alice)
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    owner = signed_in(browser, hub, "alice")
    owner.goto(f"{hub}/jobs/{job.public_id}/")
    assert owner.locator("#cancel-form button").is_visible()
    assert owner.locator("#sharing").is_visible()
    reader = signed_in(browser, hub, "bob")
    for width, height in ((1280, 900), (390, 844)):
        reader.set_viewport_size({"width": width, "height": height})
        reader.goto(f"{hub}/jobs/{job.public_id}/")
        reader.wait_for_selector("#live[data-state=live]")
        assert not reader.locator(".head-side .actions").is_visible()
        assert not reader.locator("#cancel-form button").is_visible()
        assert not reader.locator("#resubmit-form button").is_visible()
        assert reader.locator(".rename").count() == 0
        assert reader.locator("#sharing").count() == 0
        shot(reader, f"reader-job-page-{width}")


def test_a_failure_shows_once_in_words_live_and_after_a_reload(browser, hub_env, alice):
    from jobs.domain.state import job_transition
    from jobs.domain.status import FailureType, JobStatus

    hub = hub_env["HUB_URL"]
    job = factories.unqueued_job(alice)
    page = signed_in(browser, hub, "alice")
    page.goto(f"{hub}/jobs/{job.public_id}/")
    page.wait_for_selector("#live[data-state=live]")
    why = "Model m1 is no longer shared with you; ask its owner to share it again."
    job_transition(
        job=job, to=JobStatus.FAILED, message=why, failure_type=FailureType.INPUT_UNAVAILABLE
    )
    page.wait_for_selector("#failure:not([hidden])", timeout=30_000)
    for _ in range(2):  # live, then after a reload
        assert page.text_content("#failure-type") == "Input no longer shared"
        assert page.text_content("#failure-message") == why
        assert "inputs needs to change" in (page.text_content("#failure-blame") or "")
        assert why not in (page.text_content("#progress-card") or "")  # not said twice
        assert page.text_content("#link-progress") == "Stopped: see why above."
        shot(page, "failed-job-page")
        page.reload()
        page.wait_for_selector("#live[data-state=live]")


def test_an_external_run_on_a_phone_wraps_its_title_and_keeps_its_chart_legible(
    browser, hub_env, alice
):
    """A run reported from outside, as its owner sees it on a phone: the whole name shows
    (wrapped, not clipped), the legend sits below the x axis's title, and the rename works."""
    from jobs.engine.runners import external
    from jobs.services.external_runs import external_run_start

    hub = hub_env["HUB_URL"]
    name = "fine-tune of a rather large language model on the whole support archive, run 7"
    job = external_run_start(owner=alice, name=name, params={"lr": 0.001}, epochs=2)
    points = {
        "train_loss": [[s, 2.0 / s] for s in range(1, 41)],
        "val_loss": [[20, 0.2], [40, 0.1]],
    }
    external.record_report(job, external.parse_report({"metrics": points}))
    page = signed_in(browser, hub, "alice")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{hub}/jobs/{job.public_id}/")
    page.wait_for_selector("#chart .legend")
    title = page.locator("#job-name")
    assert title.text_content() == name
    assert page.evaluate("(e) => e.scrollWidth <= e.clientWidth", title.element_handle())
    box = title.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    axis = page.locator("#chart .xtitle").bounding_box()
    legend = page.locator("#chart .legend").bounding_box()
    assert axis is not None and legend is not None
    assert legend["y"] >= axis["y"] + axis["height"]  # below it, not over it
    shot(page, "external-run-phone")
    page.click(".rename summary")
    page.fill("#rename-input", "run 7")
    page.click(".rename-form button[type=submit]")
    page.wait_for_selector("#job-name:has-text('run 7')")
    assert page.text_content("#job-name") == "run 7"


def test_a_stranger_sees_404_and_gets_no_socket(browser, hub_env, alice, charlie):
    hub = hub_env["HUB_URL"]
    job = factories.unqueued_job(alice)
    page = signed_in(browser, hub, "charlie")
    response = page.goto(f"{hub}/jobs/{job.public_id}/")
    assert response.status == 404
    opened = page.evaluate(
        """(id) => new Promise((resolve) => {
            const socket = new WebSocket(`ws://${location.host}/ws/jobs/${id}/`);
            socket.onopen = () => resolve("open");
            socket.onclose = () => resolve("refused");
        })""",
        job.public_id,
    )
    assert opened == "refused"
    assert job.public_id not in page.goto(f"{hub}/jobs/").text()


def test_an_invitation_is_followed_from_the_email_to_a_live_job_page_and_revoked(
    browser, hub_env, alice, smtp_inbox, worker_pool
):
    import re

    from tests.workers import wait_for

    hub = hub_env["HUB_URL"]
    inbox, _ = smtp_inbox
    job = factories.customization_job(
        alice, epochs=400, early_stopping_patience=0
    )  # long: still live
    owner = signed_in(browser, hub, "alice")
    owner.goto(f"{hub}/jobs/{job.public_id}/")
    owner.fill("#share-add", "Newcomer@Example.com")
    owner.click(".share-form button[type=submit]")
    assert "newcomer@example.com" in owner.inner_text("#share-list")
    shot(owner, "sharing-panel")

    # The worker sends the invitation through the SMTP server; the link in it signs up.
    try:
        message = wait_for(
            lambda: next((m for m in inbox.messages if "newcomer@example.com" in m), None),
            60,
            "the email",
        )
    except AssertionError:
        raise AssertionError(
            worker_pool.output("w1")[-3000:] + worker_pool.output("w2")[-3000:]
        ) from None
    link = re.search(r"(http://\S+/invitations/\S+/)", message.replace("=\n", "")).group(1)
    guest = new_page(browser)
    guest.goto(link)
    assert "newcomer@example.com" in guest.inner_text("main")
    shot(guest, "invitation-signup")
    guest.fill("#id_username", "newcomer")
    guest.fill("#id_password1", "a long pass phrase 42")
    guest.fill("#id_password2", "a long pass phrase 42")
    guest.click("button[type=submit]")
    guest.wait_for_url(f"**/jobs/{job.public_id}/")
    guest.wait_for_selector("#live[data-state=live]")
    wait_until(guest, "window.hubJobState.series.train_loss.length > 5", timeout=60)
    assert 'id="sharing"' not in guest.content()  # the panel is the owner's
    shot(guest, "invited-live-job")

    # The owner removes the share: the guest's open page loses its live connection at once.
    owner.reload()
    owner.click("#share-list form button[type=submit]")
    guest.wait_for_selector("#live[data-state=closed]", timeout=2_000)
    shot(guest, "revoked")
    assert guest.goto(f"{hub}/jobs/{job.public_id}/").status == 404
    owner.goto(f"{hub}/jobs/{job.public_id}/")
    owner.click("#cancel-form button")


def test_the_api_docs_and_the_admin_work_under_the_content_security_policy(browser, hub_env, alice):
    hub = hub_env["HUB_URL"]
    page = signed_in(browser, hub, "alice")
    page.goto(f"{hub}/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    shot(page, "api-docs")
    page.goto(f"{hub}/admin/login/")
    page.wait_for_selector("#login-form")
    shot(page, "admin-login")


HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">"\'><svg onload=alert(3)>'


def test_hostile_names_show_as_text_on_every_page(browser, hub_env, alice):
    """A job, model and dataset named with markup: the pages show the characters, run nothing,
    and the policy had nothing to block (had escaping failed, it would have)."""
    from jobs.services.jobs import job_rename

    hub = hub_env["HUB_URL"]
    job = factories.link_job(alice)
    job_rename(job=job, name=HOSTILE)
    model = job.job_inputs.first().model
    model.name = HOSTILE
    model.save()
    page = signed_in(browser, hub, "alice")
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    for path in ("/jobs/", f"/jobs/{job.public_id}/", "/jobs/new/link/"):
        page.goto(f"{hub}{path}")
        page.wait_for_load_state("networkidle")
        assert HOSTILE in page.inner_text("main"), path
        assert page.locator("main img[src=x], main svg[onload]").count() == 0
        assert_no_csp_violations(page)
    assert dialogs == []


def _chain(alice, bob):
    """Alice links two models (upstream, run by the workers) and links its target model again
    (downstream); a fine-tune of hers, not yet queued, uses a dataset. Bob is given the
    downstream job and the fine-tune."""
    from jobs.models import Job, JobKind
    from jobs.services.jobs import job_submit_link
    from sharing.services import sharing_modify
    from tests.workers import wait_for_status

    upstream = wait_for_status(factories.link_job(alice), {"ready"}, timeout=120)
    assert upstream.target_model is not None
    downstream = job_submit_link(
        owner=alice, models=[upstream.target_model, factories.onnx_model(alice, "other")]
    )
    tune = Job.objects.create(
        kind=JobKind.CUSTOMIZATION, owner=alice, name="tune", dataset=factories.dataset(alice)
    )
    for job in (downstream, tune):
        sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    return upstream, downstream, tune


def test_model_and_dataset_pages_for_owner_reader_and_stranger(
    browser, hub_env, alice, bob, charlie
):
    hub = hub_env["HUB_URL"]
    upstream, downstream, tune = _chain(alice, bob)
    model, dataset = upstream.target_model, tune.dataset
    owner, reader, stranger = (signed_in(browser, hub, n) for n in ("alice", "bob", "charlie"))
    for width, height in ((1280, 900), (390, 844)):
        for page in (owner, reader):
            page.set_viewport_size({"width": width, "height": height})
        # From the job page to its dataset and target model, as a person would go.
        owner.goto(f"{hub}/jobs/{upstream.public_id}/")
        owner.click(f"#artifact-list a[href='/jobs/models/{model.public_id}/']")
        owner.wait_for_selector("#lineage")
        assert "bob@example.com" in owner.inner_text("#readers")
        assert downstream.public_id in owner.inner_text("#used-by")
        assert upstream.public_id in owner.inner_text("#made-by")
        assert owner.locator("#delete").is_visible()
        shot(owner, f"model-page-owner-{width}")
        owner.goto(f"{hub}/jobs/{tune.public_id}/")
        owner.click(f"li[data-input='{dataset.public_id}'] a")
        owner.wait_for_selector("#preview")
        assert owner.locator("#preview li").count() == 5
        assert not owner.evaluate("document.documentElement.scrollWidth > innerWidth")
        shot(owner, f"dataset-page-owner-{width}")
        reader.goto(f"{hub}/jobs/models/{model.public_id}/")
        assert "Owned by alice" in reader.inner_text("#access")
        assert downstream.public_id in reader.inner_text("#through")
        assert reader.locator("#delete").count() == 0
        shot(reader, f"model-page-reader-{width}")
        reader.goto(f"{hub}/jobs/datasets/{dataset.public_id}/")
        assert tune.public_id in reader.inner_text("#through")
        shot(reader, f"dataset-page-reader-{width}")
    for url in (f"/jobs/models/{model.public_id}/", f"/jobs/datasets/{dataset.public_id}/"):
        assert stranger.goto(f"{hub}{url}").status == 404


def test_deleting_a_job_cuts_off_a_reader_watching_it(browser, hub_env, alice, bob):
    from jobs.models import Job, MLModel
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    from tests.workers import wait_for_status

    job = wait_for_status(factories.link_job(alice), {"ready"}, timeout=120)
    target = job.target_model
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    reader = signed_in(browser, hub, "bob")
    reader.goto(f"{hub}/jobs/{job.public_id}/")
    reader.wait_for_selector("#live[data-state=live]")
    owner = signed_in(browser, hub, "alice")
    owner.goto(f"{hub}/jobs/{job.public_id}/")
    owner.click("#delete-link")
    owner.wait_for_selector("#plan")
    goes = owner.inner_text("#goes")
    assert target.public_id in goes and "1 person lose access at once" in goes
    shot(owner, "delete-job-confirm-1280")
    owner.set_viewport_size({"width": 390, "height": 844})
    assert not owner.evaluate("document.documentElement.scrollWidth > innerWidth")
    shot(owner, "delete-job-confirm-390")
    owner.click("#confirm-delete")
    owner.wait_for_url(f"{hub}/jobs/")
    assert f"Deleted job {job.name}" in owner.inner_text(".messages")
    reader.wait_for_selector("#live[data-state=closed]", timeout=15_000)
    assert reader.inner_text("#live") == "not available"
    assert reader.goto(f"{hub}/jobs/{job.public_id}/").status == 404
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not MLModel.objects.filter(pk=target.pk).exists()


def test_a_jobs_log_grows_live_and_reads_the_same_after_a_reload(browser, hub_env, alice, bob):
    from jobs.engine.reporter import Reporter
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    # Never sent to the workers: this test is the worker, writing through a real reporter.
    job, token = factories.claimed(factories.unqueued_job(alice))
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    reporter = Reporter(job, token)
    reporter.log("Linking 2 models: m0, m1")
    reporter.flush()
    page = signed_in(browser, hub, "bob")  # a reader sees the log too
    page.goto(f"{hub}/jobs/{job.public_id}/")
    page.wait_for_selector("#live[data-state=live]")
    assert page.locator("#log .line").count() == 1
    reporter.log("warning: <script>alert(1)</script> is text", "warning")
    reporter.log("second line\nthird line")
    reporter.flush()
    wait_until(page, "document.querySelectorAll('#log .line').length === 4", timeout=15)
    live = page.inner_text("#log")
    assert "<script>alert(1)</script> is text" in live
    assert page.locator("#log .level-warning").count() == 1
    shot(page, "job-log-live-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    assert not page.evaluate("document.documentElement.scrollWidth > innerWidth")
    shot(page, "job-log-live-390")
    page.reload()
    page.wait_for_selector("#live[data-state=live]")
    assert page.inner_text("#log") == live


def test_compare_runs_live_for_owner_reader_and_stranger(browser, hub_env, alice, bob, charlie):
    from jobs.engine.runners import external
    from jobs.services.external_runs import external_run_start
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    runs = []
    for name, rate in (("lr 1e-3", 0.001), ("lr 1e-2", 0.01)):
        run = external_run_start(owner=alice, name=name, params={"lr": rate, "epochs": 2}, epochs=2)
        points = {"train_loss": [[s, rate * 100 / s] for s in range(1, 21)]}
        external.record_report(run, external.parse_report({"metrics": points}))
        runs.append(run)
    sharing_modify(target=runs[0], actor=alice, add_emails=[bob.email])
    query = f"?jobs={runs[0].public_id},{runs[1].public_id}"
    owner = signed_in(browser, hub, "alice")
    owner.goto(f"{hub}/jobs/compare/{query}")
    wait_until(
        owner, "(window.hubCompare || []).every((r) => r.series.train_loss.length === 20)", 15
    )
    assert owner.evaluate("document.getElementById('chart').data.length") == 4
    assert "lr" in owner.text_content("#runs .differs")
    # Live: a report of the second run reaches the open comparison.
    later = {"train_loss": [[21, 0.04]], "val_loss": [[20, 0.05]]}
    external.record_report(runs[1], external.parse_report({"metrics": later}))
    wait_until(owner, "window.hubCompare[1].series.train_loss.length === 21", 15)
    wait_until(owner, "window.hubCompare[1].series.val_loss.length === 1", 15)
    shot(owner, "compare-owner-1280")
    owner.set_viewport_size({"width": 390, "height": 844})
    owner.reload()
    wait_until(
        owner, "window.hubCompare && window.hubCompare[1].series.train_loss.length === 21", 15
    )
    shot(owner, "compare-owner-390")
    reader = signed_in(browser, hub, "bob")
    reader.goto(f"{hub}/jobs/compare/{query}")
    wait_until(reader, "window.hubCompare && window.hubCompare.length === 1", 15)
    assert runs[1].public_id not in reader.content()
    assert "1 of the runs this link names is not shared with you" in reader.inner_text("#left-out")
    stranger = signed_in(browser, hub, "charlie")
    stranger.goto(f"{hub}/jobs/compare/{query}")
    assert stranger.locator("#runs").count() == 0
    assert runs[0].public_id not in stranger.content()


# What a newcomer stumbled on (issue 23): error pages, early stopping, layouts at phone width.

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SHOTS = Path(os.environ.get("HUB_SHOTS_DIR", str(ARTIFACTS)))
NO_SIDEWAYS_SCROLL = (
    "document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth"
)


CHARTS_FIT = (
    "[...document.querySelectorAll('.js-plotly-plot .main-svg')].every("
    "(svg) => svg.getBoundingClientRect().right <= document.documentElement.clientWidth)"
)


def at_both_widths(page, name: str, ready=None) -> None:
    """A screenshot at a desktop's and a phone's width; at neither may the page scroll
    sideways (what is wide scrolls inside its own box)."""
    for label, size in (("1280", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(size)
        # A chart follows the new width on its own resize event: wait for it to fit.
        wait_until(page, CHARTS_FIT, 15)
        if ready is not None:
            ready(page)
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{name} scrolls sideways at {label} px"
        assert_no_csp_violations(page)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def test_error_pages_are_the_hubs_own_and_say_what_to_do_next(browser, hub_env, alice, bob):
    from django.test import RequestFactory

    from hubsite import views
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    job = factories.customization_job(alice, epochs=1)
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    page = signed_in(browser, hub, "bob")
    mistyped = page.goto(f"{hub}/jobs/a-mistyped-address-that-goes-on-for-quite-a-while-yes/")
    assert mistyped.status == 404
    assert page.inner_text("h1") == "There is nothing here"
    assert page.locator("#next-steps a:has-text('Back to your jobs')").count() == 1
    at_both_widths(page, "error-404")
    refused = page.goto(f"{hub}/jobs/datasets/{job.dataset.public_id}/delete/")
    assert refused.status == 403
    assert "Only the dataset's owner can delete it" in page.inner_text("#error-page")
    at_both_widths(page, "error-403")
    # The 500 page as the hub renders it (no request, no database), served at an address of
    # the live hub so that its stylesheet loads as on any page.
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        body = views.server_error(RequestFactory().get("/")).content.decode()
    page.route(
        f"{hub}/jobs/broken/",
        lambda route: route.fulfill(status=500, body=body, content_type="text/html"),
    )
    assert page.goto(f"{hub}/jobs/broken/").status == 500
    assert page.inner_text("h1") == "The hub hit an internal error"
    assert page.evaluate("getComputedStyle(document.querySelector('.topbar')).display") == "flex"
    at_both_widths(page, "error-500")
    page.click("#next-steps a:has-text('Back to your jobs')")
    page.wait_for_url("**/jobs/")


def test_the_api_token_page_does_not_scroll_sideways_on_a_phone(browser, hub_env, alice):
    hub = hub_env["HUB_URL"]
    page = signed_in(browser, hub, "alice")
    page.goto(f"{hub}/account/token/")
    token = page.inner_text("#api-token").strip()
    at_both_widths(page, "token-page")
    page.set_viewport_size(PHONE)
    # The whole token and the export lines stay readable (wrapped, not cut).
    assert token in page.inner_text("#api-token").replace("\n", "")
    assert f"export HUB_API_TOKEN={token}" in page.inner_text("#token-env").replace("\n", "")


def _early_stopped(alice, epochs: int = 12, stopped: int = 8, best: int = 6):
    """A customization job that ran ``stopped`` of its ``epochs`` epochs (best ``best``), its
    status details as a worker leaves them, waiting for its last transitions."""
    from datetime import timedelta

    from django.utils import timezone

    from jobs.domain.state import job_transition
    from jobs.domain.status import JobStatus
    from jobs.models import Job, MetricSeries
    from jobs.services.jobs import job_submit_customization

    # Asks for a GPU, which no worker of the tests has: it waits in the queue, and the test
    # moves it along as a worker would, with no worker training it meanwhile.
    job = job_submit_customization(
        owner=alice,
        dataset=factories.dataset(alice),
        hyperparameters={"epochs": epochs, "batch_size": 5},
        hardware="gpu",
    )
    job.refresh_from_db()
    if job.status == JobStatus.CREATED:
        job_transition(job=job, to=JobStatus.PENDING, message="Queued; waiting for a worker.")
    job_transition(job=job, to=JobStatus.RUNNING, message="Running on a test's worker.")
    # A heartbeat far ahead: the reaper must not take the test for a lost worker.
    Job.objects.filter(pk=job.pk).update(
        training_samples=50, epochs_completed=stopped, steps_completed=stopped * 9,
        best_epoch=best, train_loss=0.5, val_loss=0.6,
        heartbeat_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip
    from jobs.models import MetricPoint

    series = MetricSeries.objects.create(
        job=job, key="val_loss", points_count=stopped, last_step=stopped * 9
    )
    now = timezone.now()
    MetricPoint.objects.bulk_create(
        [
            MetricPoint(series=series, step=e * 9, value=1.0 / e, timestamp=now)
            for e in range(1, stopped + 1)
        ]
    )
    job.refresh_from_db()
    return job


def test_a_job_that_stopped_early_reads_as_finished_live_and_after_a_reload(
    browser, hub_env, alice
):
    from jobs.domain.state import job_transition
    from jobs.domain.status import JobStatus

    hub = hub_env["HUB_URL"]
    job = _early_stopped(alice)
    page = signed_in(browser, hub, "alice")
    page.goto(f"{hub}/jobs/{job.public_id}/")
    page.wait_for_selector("#live[data-state=live]")
    assert page.inner_text("#pct") == "66.7%"  # running: the work left shows
    # The same session in a second tab (signing in again would change the password's hash and
    # end the first tab's session).
    listing = page.context.new_page()
    listing.goto(f"{hub}/jobs/")
    listing.wait_for_selector("#live[data-state=live]")
    for status in (JobStatus.COMPLETED, JobStatus.READY):
        job_transition(job=job, to=status, message=str(status))
    page.wait_for_selector("#status-badge .status-ready", timeout=30_000)
    row = f"#job-table tr[data-job={job.public_id}]"
    listing.wait_for_selector(f"{row} .status-ready", timeout=30_000)

    def seen(page) -> tuple[str, str, str]:
        return (
            page.inner_text("#pct") + " " + page.inner_text("#pct-detail"),
            page.evaluate("document.getElementById('pct-bar').style.width"),
            page.get_attribute("#pct-bar-wrap", "aria-valuenow") or "",
        )

    def listed(listing) -> tuple[str, str]:
        return (
            listing.inner_text(f"{row} .pct"),
            listing.evaluate(f"document.querySelector('{row} .bar span').style.width"),
        )

    live, live_row = seen(page), listed(listing)
    assert live == ("stopped early at epoch 8 of 12 (percentage_done 66.7)", "100%", "100")
    assert live_row == ("stopped early at epoch 8 of 12", "100%")
    assert page.inner_text("[data-field=percentage_done]") == "66.7"  # the contract's value
    page.reload()
    listing.reload()
    assert seen(page) == live and listed(listing) == live_row
    at_both_widths(page, "job-stopped-early")
    at_both_widths(listing, "job-list-stopped-early")


MARKER = "(document.getElementById('chart').layout.annotations || []).map((a) => a.text)"


def test_the_best_epoch_marker_is_there_before_the_points_arrive(browser, hub_env, alice):
    """The order that failed on a busy machine: the page is live (its socket open) before the
    chart's points have loaded. The chart exists from the start, with its best-epoch marker
    (known from the page), so reading it then is no error; the points are held back here until
    after that read, rather than hoping for a slow machine."""
    from jobs.domain.state import job_transition
    from jobs.domain.status import JobStatus

    hub = hub_env["HUB_URL"]
    job = _early_stopped(alice)
    for status in (JobStatus.COMPLETED, JobStatus.READY):
        job_transition(job=job, to=status, message=str(status))
    page = signed_in(browser, hub, "alice")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    held: list = []
    holding = [True]

    def points(route) -> None:
        if holding[0]:
            held.append(route)
        else:
            route.continue_()

    page.route("**/metrics/**", points)
    page.goto(f"{hub}/jobs/{job.public_id}/")
    page.wait_for_selector("#live[data-state=live]")
    deadline = time.monotonic() + 15
    while not held:  # the page asked for its points, and they are held
        assert time.monotonic() < deadline, "the page never asked for its points"
        page.wait_for_timeout(50)
    assert page.evaluate("window.hubJobState.series.val_loss.length") == 0
    assert page.evaluate(MARKER) == ["best epoch 6"]
    holding[0] = False
    for route in held:
        route.continue_()
    wait_until(page, "window.hubJobState.series.val_loss.length === 8", 15)
    assert page.evaluate(MARKER) == ["best epoch 6"]
    assert errors == []


def test_the_charts_toolbar_leaves_the_best_epoch_label_readable(browser, hub_env, alice):
    from jobs.domain.state import job_transition
    from jobs.domain.status import JobStatus

    hub = hub_env["HUB_URL"]
    job = _early_stopped(alice, stopped=8, best=8)  # the label at the right edge, by the toolbar
    for status in (JobStatus.COMPLETED, JobStatus.READY):
        job_transition(job=job, to=status, message=str(status))
    page = signed_in(browser, hub, "alice")
    page.goto(f"{hub}/jobs/{job.public_id}/")
    wait_until(page, "window.hubJobState.series.val_loss.length === 8", 15)

    def apart(page) -> None:
        page.hover("#chart .nsewdrag")  # the toolbar shows while the pointer is on the chart
        boxes = page.evaluate(
            """() => ['#chart .annotation-text', '#chart .modebar'].map((selector) => {
                const r = document.querySelector(selector).getBoundingClientRect();
                return { x: r.left, y: r.top, width: r.width, height: r.height };
            })"""
        )
        label, toolbar = boxes
        assert label["width"] > 0 and toolbar["width"] > 0, boxes
        across = (
            label["x"] < toolbar["x"] + toolbar["width"]
            and toolbar["x"] < label["x"] + label["width"]
        )
        down = (
            label["y"] < toolbar["y"] + toolbar["height"]
            and toolbar["y"] < label["y"] + label["height"]
        )
        assert not (across and down), boxes

    page.locator("#chart").scroll_into_view_if_needed()
    at_both_widths(page, "chart-best-epoch", ready=apart)


def test_the_compare_table_names_base_models_and_datasets_and_scrolls_in_its_box(
    browser, hub_env, alice
):
    hub = hub_env["HUB_URL"]
    runs = [factories.customization_job(alice, epochs=e, learning_rate=0.001) for e in (2, 3, 4)]
    page = signed_in(browser, hub, "alice")
    page.goto(f"{hub}/jobs/compare/?jobs={','.join(r.public_id for r in runs)}")
    assert page.locator("#base-models td").count() == 3
    assert "tiny-llama" in page.inner_text("#base-models")
    assert page.locator("#datasets td a:has-text('numbers')").count() == 3

    def scrolls_inside(page) -> None:
        box = page.locator(".table-scroll").bounding_box()
        assert box is not None and box["x"] + box["width"] <= page.viewport_size["width"]

    at_both_widths(page, "compare-inputs", ready=scrolls_inside)


def test_the_upload_pages_state_the_size_limit(browser, hub_env, alice):
    hub = hub_env["HUB_URL"]
    page = signed_in(browser, hub, "alice")
    for what in ("model", "dataset"):
        page.goto(f"{hub}/jobs/upload/{what}/")
        assert "Up to 2.0 MiB a file" in page.inner_text("#upload-limit")  # the live hub's limit
        at_both_widths(page, f"upload-{what}")


def test_an_evaluations_scores_appear_live_when_it_ends_for_owner_and_reader(
    browser, hub_env, alice, bob
):
    """Held back from the workers, the job is run here while the owner's page is open: the
    scores arrive without a reload; a reader's page shows them too."""
    from unittest import mock

    from jobs.domain.base_models import BUILTIN_NAME
    from jobs.services.jobs import job_submit_evaluation
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    with mock.patch("jobs.services.jobs.enqueue_on_commit"):
        job = job_submit_evaluation(
            owner=alice, models=[BUILTIN_NAME], dataset=factories.dataset(alice, records=4),
            settings={"limit": 3, "max_new_tokens": 3},
        )  # fmt: skip
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    page = signed_in(browser, hub, "alice")
    page.goto(f"{hub}/jobs/{job.public_id}/")
    page.wait_for_selector("#live[data-state=live]")
    assert page.is_visible("#evaluation-pending")
    assert factories.run_here(job).status == "ready"
    page.wait_for_selector("#evaluation-metrics", timeout=30_000)
    assert "tiny-llama" in page.inner_text("#evaluation-metrics")
    assert page.locator("#evaluation-rows tbody tr").count() == 3
    reader = signed_in(browser, hub, "bob")
    reader.goto(f"{hub}/jobs/{job.public_id}/")
    assert "tiny-llama" in reader.inner_text("#evaluation-metrics")


WATCH_ANSWERS = """
window.__answers = [];
new MutationObserver(() => {
  for (const pane of document.querySelectorAll(".try-answer")) {
    window.__answers.push([pane.dataset.state, pane.querySelector(".try-text").textContent.length]);
  }
}).observe(document.getElementById("try-it"),
           {subtree: true, childList: true, characterData: true, attributes: true});
"""
ANSWERED = "[...document.querySelectorAll('.try-answer')].every(p => ['done', 'failed'].includes(p.dataset.state))"


def _try(page, prompt: str, *, max_tokens: int | None = None, chat: bool = True) -> list[str]:
    page.fill("#try-prompt", prompt)
    if not chat:
        page.uncheck("#try-chat")
    if max_tokens:
        page.fill("#try-max-tokens", str(max_tokens))
    page.click("#try-generate")
    wait_until(page, ANSWERED, 120)
    return page.eval_on_selector_all(".try-answer", "ps => ps.map(p => p.dataset.state)")


def test_try_it_answers_side_by_side_for_a_reader_streams_for_the_owner_and_hides_from_a_stranger(
    browser, hub_env, generation_worker, alice, bob, charlie
):
    """A reader of a ready fine-tuning job tries a prompt: the base's and the fine-tuned
    model's answers side by side, at desktop and phone width (the second prompt finds both
    models loaded); the owner of an uploaded model sees its answer part-written before it
    ends; a stranger finds neither page."""
    from django.core.files.base import ContentFile

    from jobs.domain.base_models import BUILTIN_NAME
    from jobs.services.assets import model_upload
    from sharing.services import sharing_modify
    from tests.hf_samples import tiny_llama_zip
    from tests.workers import wait_for_status

    hub = hub_env["HUB_URL"]
    job = wait_for_status(factories.customization_job(alice, epochs=1), {"ready", "failed"}, 120)
    assert job.status == "ready" and job.target_model is not None, job.failure_message
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    page = signed_in(browser, hub, "bob")
    page.goto(f"{hub}/jobs/{job.public_id}/")
    models = page.eval_on_selector_all(".try-answer", "ps => ps.map(p => p.dataset.model)")
    assert models == [BUILTIN_NAME, job.target_model.public_id]
    states = _try(page, "one hundred and one, one hundred and two,", chat=False)
    assert states == ["done", "done"], page.inner_text("#try-it")
    assert "one hundred" in page.locator(".try-text").nth(1).inner_text()
    assert "tokens · first after" in page.locator(".try-facts").nth(0).inner_text()
    shot(page, "try-it-desktop")

    phone = signed_in(browser, hub, "bob")
    phone.set_viewport_size({"width": 390, "height": 844})
    phone.goto(f"{hub}/jobs/{job.public_id}/")
    assert _try(phone, "7") == ["done", "done"], phone.inner_text("#try-it")
    for index in (0, 1):  # the second prompt to each model found it loaded
        assert "model was loaded" in phone.locator(".try-facts").nth(index).inner_text()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(phone, "try-it-phone")

    stranger = signed_in(browser, hub, "charlie")
    for url in (f"/jobs/{job.public_id}/", f"/jobs/models/{job.target_model.public_id}/"):
        assert stranger.goto(f"{hub}{url}").status == 404
        assert stranger.locator("#try-it").count() == 0

    # An untrained model (no end-of-text learnt) writes until its context is full: long
    # enough for the page to show it part-written.
    untrained = model_upload(owner=alice, file=ContentFile(tiny_llama_zip(), "untrained.zip"))
    owner = signed_in(browser, hub, "alice")
    owner.goto(f"{hub}/jobs/models/{untrained.public_id}/")
    owner.evaluate(WATCH_ANSWERS)
    assert _try(owner, "one two", max_tokens=256, chat=False) == ["done"]
    final = len(owner.locator(".try-text").inner_text())
    seen = owner.evaluate("window.__answers")
    part_written = [n for state, n in seen if state == "streaming"]
    assert part_written and 0 < min(part_written) < final, seen[-5:]


def test_the_activity_page_lists_what_was_done_to_yours_and_fits_a_phone(
    browser, hub_env, alice, bob
):
    from sharing.services import sharing_modify

    hub = hub_env["HUB_URL"]
    job = factories.ready_job(factories.unqueued_job(alice))  # no worker takes it
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    reader = signed_in(browser, hub, "bob")
    # Bob downloads alice's results with his browser's session.
    assert reader.request.get(f"{hub}/api/v1/jobs/{job.public_id}/results/").ok
    page = signed_in(browser, hub, "alice")
    page.click("text=Activity")
    page.wait_for_selector("#activity")
    rows = page.locator("#activity tbody tr")
    actions = [rows.nth(i).get_attribute("data-action") for i in range(rows.count())]
    assert {"share_given", "downloaded", "sign_in"} <= set(actions)
    assert bob.email in page.inner_text("#activity")
    at_both_widths(page, "activity")
