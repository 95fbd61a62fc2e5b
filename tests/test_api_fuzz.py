"""Schemathesis against the live server's /openapi.json: no input, valid or not, gets a 5xx."""

from __future__ import annotations

import os
import time

import pytest
import schemathesis
from conftest import EXPERT, LiveServer, open_context
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from test_db import new_image

from db import images as image_db
from db.scores import NewScore, replace_scores
from labeling import label_studio
from labeling.ranking.scoring import scorer_name

# Per operation and mode: six operations, two modes, about 240 requests in ~10 s per database.
# LOUPE_FUZZ_EXAMPLES=300 digs deeper (about 40 s per database).
EXAMPLES_PER_OPERATION = int(os.environ.get("LOUPE_FUZZ_EXAMPLES", "20"))
FUZZ = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same cases every run, so a failure here is a failure everywhere
    database=None,  # nothing kept between runs in .hypothesis/
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@pytest.fixture
def fuzz_server(tmp_path, database_url):
    """A live server that never rate-limits (the fuzzer sends hundreds of requests from one address),
    with the expert bob and three scored images, so that decisions and the queue reach the database."""
    from db.users import add_user

    context = open_context(
        tmp_path / "data",
        database_url,
        predict_rate_per_s=0,  # 0 turns the per-address limit off
        login_failures_per_user=0,
        login_failures_per_address=0,
    )
    add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    ids = [image_db.add_image(context.database, new_image(f"{n:064d}", label))[0].id for n, label in enumerate("ab")]
    ids.append(image_db.add_image(context.database, new_image(f"{9:064d}", None))[0].id)
    scores = [NewScore(i, 0.5, "a", 0.5, 0.5, [["a", 0.5]]) for i in ids]
    replace_scores(context.database, scorer_name(), scores)
    admin = add_user(context.database, "alice", "admin", "alice-password")
    with LiveServer(context) as server:
        # Label Studio's routes take a token, not an account: the fuzzer sends one so their bodies get fuzzed.
        server.label_studio_token = label_studio.make_token(context, admin, "fuzz", "http://127.0.0.1:9").token
        yield server
    context.database.dispose()


def test_no_operation_answers_a_server_error(fuzz_server):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/health", "/api/predict", "/api/queue", "/api/decisions"}
    started = time.monotonic()
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @FUZZ
            def call(case):
                # Basic auth as the expert on every route: the review routes check it, the others ignore it;
                # Label Studio's routes get its token as the password, as Label Studio sends it.
                auth = ("loupe", fuzz_server.label_studio_token) if "/label-studio/" in case.path else EXPERT
                response = case.call(base_url=fuzz_server.url, auth=auth, timeout=30)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                call()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # an operation without inputs has nothing to get wrong
            except Exception as failure:  # collect every operation's failure, not only the first
                failures.append(f"{operation.label} ({mode.value}):\n{failure}")
    assert not failures, "\n\n".join(failures)
    assert time.monotonic() - started < 120  # a generous bound; it takes ~15 s on two cores
