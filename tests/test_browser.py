"""UI flows in Debian's Chromium, as a person would click them."""

from __future__ import annotations

import re
import zipfile

from conftest import ADMIN, EXPERT, LiveServer, distinct_images
from playwright.sync_api import expect
from training_fixtures import copy_data_dir, open_data_dir

from db import images as image_db
from db import model_versions as version_db
from db import runs as run_db
from db.users import add_user
from training.scheduler import LoopPolicy, save_policy


def log_in(page, base_url: str, user: tuple[str, str]) -> None:
    page.goto(f"{base_url}/review/")
    page.get_by_label("username").fill(user[0])
    page.get_by_label("password").fill(user[1])
    page.get_by_role("button", name="Login").click()
    page.get_by_text(f"Logged in as {user[0]}").wait_for()


def block_the_internet(page, attempts: list[str]) -> None:
    """Record and refuse any request that leaves the loopback server."""

    def route(route):
        url = route.request.url
        if re.match(r"^(https?|wss?)://127\.0\.0\.1[:/]", url) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            attempts.append(url)
            route.abort()

    page.route("**/*", route)


def test_admin_logs_in_and_imports_an_upload(live_server, page, tmp_path):
    attempts: list[str] = []
    block_the_internet(page, attempts)
    images = distinct_images(4)
    (tmp_path / "single.png").write_bytes(images[0])
    with zipfile.ZipFile(tmp_path / "pets.zip", "w") as archive:
        archive.writestr("cat/a.png", images[1])
        archive.writestr("dog/b.png", images[2])
        archive.writestr("../evil.png", images[3])

    log_in(page, live_server.url, ADMIN)
    page.get_by_role("tab", name="Admin").click()
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_text("0 images").wait_for()
    page.locator("#admin-files input[type=file]").set_input_files(
        [str(tmp_path / "single.png"), str(tmp_path / "pets.zip")]
    )
    page.get_by_label("Label for images without a class folder (optional)").fill("bird")
    page.locator("#admin-import").click()
    page.get_by_text("Import finished: added 3, duplicates 0, rejected 1.").wait_for()
    page.get_by_text("3 images: 3 active").wait_for()
    expect(page.get_by_role("grid", name="Rejected items")).to_contain_text("pets.zip:../evil.png")

    labels = sorted(r.label for r in image_db.iter_active_labeled(live_server.context.database))
    assert labels == ["bird", "cat", "dog"]
    assert attempts == []


def test_expert_does_not_see_the_admin_tab(live_server, page):
    log_in(page, live_server.url, EXPERT)
    page.get_by_role("tab", name="Review").wait_for()
    assert page.get_by_role("tab", name="Admin").count() == 0


def test_public_predict_page_loads_offline(live_server, page):
    attempts: list[str] = []
    block_the_internet(page, attempts)
    page.goto(live_server.url + "/")
    page.get_by_text("No model has been trained yet").wait_for()
    assert attempts == []


def test_visitor_predicts_on_the_public_page(trained_server, page, tmp_path):
    from training_fixtures import shape_image

    (tmp_path / "disc.png").write_bytes(shape_image("disc", seed=11))
    page.goto(trained_server.url + "/")
    page.get_by_text("Model version v1 answers.").wait_for()
    page.locator("#predict-image input[type=file]").set_input_files(str(tmp_path / "disc.png"))
    page.locator("#predict-button").click()
    page.get_by_text("Answered by model version v1.").wait_for()
    expect(page.locator("#predict-label")).to_contain_text("disc")
    expect(page.locator("#predict-label")).to_contain_text("%")
    page.screenshot(path=str(tmp_path / "predict.png"), full_page=True)


def test_expert_reviews_the_queue_with_the_keyboard(live_server, page, tmp_path):
    from db import decisions as decision_db

    context = live_server.context
    rows = seed_review_queue(context, tmp_path)

    log_in(page, live_server.url, EXPERT)
    facts = page.locator("#review-facts")
    expect(facts).to_contain_text("the model says dog")
    expect(facts).to_contain_text("a.png")
    page.keyboard.press("2")  # relabel to the 2nd class (its button reads "2 dog")
    expect(facts).to_contain_text("b.png")
    page.keyboard.press("Enter")  # keep
    expect(facts).to_contain_text("c.png")
    expect(page.locator("#review-progress")).to_contain_text("Reviewed this session: 2")
    page.keyboard.press("Control+z")  # undo the keep of b.png: it comes back first
    expect(facts).to_contain_text("b.png")
    page.keyboard.press("ArrowRight")  # skip it for now
    expect(facts).to_contain_text("c.png")
    page.keyboard.press("Delete")
    expect(facts).to_contain_text("Nothing left to review here")  # b.png is skipped this session
    page.keyboard.press("Control+z")  # undo the delete: c.png is back, and skips are forgotten
    expect(facts).to_contain_text("b.png")
    page.locator("#review-new-label input").fill("bird")  # a class nobody has used yet
    page.locator("#review-new-label input").press("Enter")
    page.locator("#review-relabel").click()
    expect(facts).to_contain_text("c.png")
    page.screenshot(path=str(tmp_path / "review.png"), full_page=True)

    log = decision_db.list_decisions(context.database)
    assert [d.action for d in log] == ["relabel", "keep", "undo", "delete", "undo", "relabel"]
    assert {d.user_name for d in log} == {"bob"}
    images = {name: image_db.get_image(context.database, row.id) for name, row in rows.items()}
    assert (images["a.png"].label, images["b.png"].label, images["c.png"].label) == ("dog", "bird", "cat")
    assert images["c.png"].status == "active"


def seed_review_queue(context, tmp_path) -> dict:
    """Three imported images (a.png cat, b.png dog, c.png cat) with scores a > b > c; rows by name."""
    from db.scores import NewScore, replace_scores
    from labeling.imports.ingest import import_paths
    from labeling.ranking.scoring import scorer_name

    images = distinct_images(3)
    for name, label, data in (("a.png", "cat", images[0]), ("b.png", "dog", images[1]), ("c.png", "cat", images[2])):
        (tmp_path / "in" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / label / name).write_bytes(data)
    import_paths(context, [tmp_path / "in"])
    rows = {r.original_name: r for r in image_db.iter_active_labeled(context.database)}
    replace_scores(
        context.database,
        scorer_name(),
        [
            NewScore(rows["a.png"].id, 0.9, "cat", "dog", 0.1, [["dog", 0.9], ["cat", 0.1]]),
            NewScore(rows["b.png"].id, 0.6, "dog", "cat", 0.4, [["cat", 0.6], ["dog", 0.4]]),
            NewScore(rows["c.png"].id, 0.1, "cat", "cat", 0.9, [["cat", 0.9], ["dog", 0.1]]),
        ],
    )
    return rows


def test_expert_applies_a_page_of_grid_decisions(live_server, page, tmp_path):
    from db import decisions as decision_db

    context = live_server.context
    rows = seed_review_queue(context, tmp_path)
    log_in(page, live_server.url, EXPERT)
    page.get_by_role("tab", name="Grid").click()
    expect(page.locator("#grid-summary")).to_contain_text("The 3 likeliest wrong labels of 3 unreviewed")
    expect(page.locator("#grid-caption-0")).to_contain_text("cat → model: dog")
    page.locator("#grid-choice-0").get_by_text("relabel to prediction").click()
    page.locator("#grid-choice-1").get_by_text("delete").click()
    page.locator("#grid-apply").click()
    expect(page.locator("#grid-summary")).to_contain_text("of 1 unreviewed")
    log = decision_db.list_decisions(context.database)
    assert sorted((d.image_id, d.action) for d in log) == sorted(
        [(rows["a.png"].id, "relabel"), (rows["b.png"].id, "delete")]
    )
    assert image_db.get_image(context.database, rows["a.png"].id).label == "dog"
    assert image_db.get_image(context.database, rows["b.png"].id).status == "deleted"


def test_admin_retrains_from_the_button_and_watches_the_run_end(trained_dir, tmp_path, page):
    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    save_policy(context, LoopPolicy(size=64, freeze_epochs=1, epochs=1, quick_loop=False, retrain_after_decisions=0))
    attempts: list[str] = []
    block_the_internet(page, attempts)
    with LiveServer(context) as server:
        log_in(page, server.url, ADMIN)
        page.get_by_role("tab", name="Admin").click()
        page.locator("#retrain-now").click()
        page.get_by_text("Training run 2 started by alice").wait_for()
        expect(page.locator("#runs-table")).to_contain_text("manual")
        page.locator("#retrain-now").click()  # a second request while run 2 is active is refused
        page.get_by_text("training run 2 is").first.wait_for()
        summary = page.locator("#run-summary")
        expect(summary).to_contain_text("Run 2: succeeded", timeout=300_000)  # the timer keeps polling
        expect(summary).to_contain_text("Promotion gate: promoted")
        expect(page.locator("#runs-table")).to_contain_text("succeeded")
        page.locator("#run-curves img, #run-curves svg, #run-curves canvas").first.wait_for()
        page.locator("#run-confusion img, #run-confusion svg, #run-confusion canvas").first.wait_for()
    assert version_db.promoted_version(context.database).version == "v2"
    assert len(run_db.list_runs(context.database)) == 2
    assert attempts == []
    context.database.dispose()


def test_expert_resolves_a_duplicate_pair_side_by_side(live_server, page, tmp_path):
    from db.duplicate_pairs import add_pairs, count_pending
    from labeling.imports.ingest import import_paths

    (tmp_path / "pets" / "cat").mkdir(parents=True)
    for index, data in enumerate(distinct_images(2)):
        (tmp_path / "pets" / "cat" / f"copy{index}.png").write_bytes(data)
    database = live_server.context.database
    import_paths(live_server.context, [tmp_path / "pets"])
    first, second = sorted(row.id for row in image_db.iter_active_labeled(database))
    add_pairs(database, [(first, second, 0.993)])

    log_in(page, live_server.url, EXPERT)
    page.get_by_role("tab", name="Duplicates").click()
    expect(page.locator("#duplicates-summary")).to_contain_text("similarity 0.993")
    expect(page.locator("#duplicates-left")).to_contain_text("copy0.png")
    page.locator("#duplicates-keep-first").click()
    expect(page.locator("#duplicates-summary")).to_contain_text("No near-duplicate pairs are waiting")
    assert image_db.get_image(database, first).status == "active"
    assert image_db.get_image(database, second).status == "deleted"
    assert count_pending(database) == 0
