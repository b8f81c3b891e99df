"""The named methods: which phase may train each, which upstream run each may start from, which tasks each trains."""

import pytest

from components.errors import XstiltsInputError
from components.methods import METHODS, check_upstream, get_method, unsupported_reason
from components.tasks import get_task


def test_intermediate_runs_train_the_encoder_or_an_intermediate_task_adapter():
    assert get_method("madx", "intermediate").adapters
    with pytest.raises(XstiltsInputError, match="unknown method 'full_then_madx' for the intermediate phase"):
        get_method("full_then_madx", "intermediate")


@pytest.mark.parametrize("method, init_run_id, upstream", [
    ("full", "", ""), ("full", "r1", "full"), ("madx", "", ""), ("task_adapter", "", ""),
    ("adapter_stilts", "r1", "madx"), ("full_then_madx", "r1", "full"),
])
def test_allowed_upstreams(method, init_run_id, upstream):
    check_upstream(METHODS[method], init_run_id, upstream)


@pytest.mark.parametrize("method, init_run_id, upstream, message", [
    ("madx", "r1", "full", "method madx cannot start from intermediate run r1, trained with method 'full'"),
    ("full", "r1", "madx", "expected an upstream method of: full"),
    ("adapter_stilts", "", "", "method adapter_stilts starts from an intermediate run"),
    ("full_then_madx", "r1", "madx", "expected an upstream method of: full"),
])
def test_refused_upstreams(method, init_run_id, upstream, message):
    with pytest.raises(XstiltsInputError, match=message):
        check_upstream(METHODS[method], init_run_id, upstream)


def test_adapter_methods_train_every_task_type_with_a_head():
    for task in ("xnli", "panx", "xquad", "xcopa", "sst2"):
        assert not any(unsupported_reason(method, get_task(task)) for method in METHODS.values())
    assert "dual-encoder retrieval" in unsupported_reason(METHODS["madx"], get_task("lareqa"))
    assert not unsupported_reason(METHODS["full"], get_task("lareqa"))
