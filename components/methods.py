"""The training methods, by name: what each trains, what it stacks on, and which upstream run it may start from.

Every training run logs its method as the `method` param, so the study grid and the analysis (configuration = method
x model x intermediate task) tell them apart; the analysis compares every method against `full`.
"""

from dataclasses import dataclass

from components.errors import XstiltsInputError
from components.tasks import TaskSpec, TaskType

NO_UPSTREAM = ""  # the method may start without an `init_run_id`


@dataclass(frozen=True)
class Method:
    """One named method.

    Attributes:
        adapters: a task adapter and the head are trained; the base model (and any language adapter) stays frozen,
            and the run hands on adapters and heads, never a copy of the base model.
        lang_adapters: the task adapter is stacked on the training language's adapter, which evaluation swaps for
            each target language's.
        upstream: the methods an `init_run_id` (intermediate) run may have been trained with; NO_UPSTREAM allows none.
        encoder_from_upstream: the upstream run's `model/` encoder is the base model (otherwise the registry model).
        continues_task_adapter: the task adapter starts from the upstream run's (intermediate-task) adapter.
    """

    name: str
    description: str
    adapters: bool = False
    lang_adapters: bool = False
    upstream: tuple[str, ...] = (NO_UPSTREAM,)
    encoder_from_upstream: bool = False
    continues_task_adapter: bool = False


_METHODS = (
    Method("full", "full fine-tuning of the encoder and head", upstream=(NO_UPSTREAM, "full"),
           encoder_from_upstream=True),
    Method("madx", "MAD-X: a task adapter and head on the frozen source-language adapter; evaluation swaps in the "
                   "target language's adapter", adapters=True, lang_adapters=True),
    Method("task_adapter", "a task adapter and head on the frozen base model, no language adapters", adapters=True),
    Method("adapter_stilts", "MAD-X whose task adapter continues the intermediate-task adapter of a `madx` "
                             "intermediate run", adapters=True, lang_adapters=True, upstream=("madx",),
           continues_task_adapter=True),
    Method("full_then_madx", "MAD-X on the encoder of a full-fine-tuned intermediate run, with language adapters "
                             "trained for that encoder", adapters=True, lang_adapters=True, upstream=("full",),
           encoder_from_upstream=True),
)
METHODS: dict[str, Method] = {method.name: method for method in _METHODS}
INTERMEDIATE_METHODS = ("full", "madx")  # an intermediate run trains the encoder, or an intermediate-task adapter


def unsupported_reason(method: Method, spec: TaskSpec) -> str:
    """Why `method` cannot train `spec` ("" when it can): adapter methods train a task adapter with the task's head,
    and dual-encoder retrieval has no head (its scoring pools every language at once, so no per-language swap)."""
    if method.adapters and spec.task_type is TaskType.DUAL_ENCODER_RETRIEVAL:
        return f"method {method.name} trains a task adapter with a task head; {spec.name} is dual-encoder retrieval"
    return ""


def get_method(name: str, phase: str = "target") -> Method:
    """The method `name`, if `phase` (`intermediate` or `target`) can train with it."""
    allowed = INTERMEDIATE_METHODS if phase == "intermediate" else tuple(METHODS)
    if name not in allowed:
        raise XstiltsInputError(f"unknown method {name!r} for the {phase} phase; expected one of: {', '.join(allowed)}")
    return METHODS[name]


def check_upstream(method: Method, init_run_id: str, upstream_method: str) -> None:
    """Raises unless `method` may start from an upstream run trained with `upstream_method` (or from none)."""
    if not init_run_id:
        if NO_UPSTREAM not in method.upstream:
            raise XstiltsInputError(f"method {method.name} starts from an intermediate run: pass init_run_id of a "
                                    f"FINISHED intermediate run of method {' or '.join(method.upstream)}")
        return
    if upstream_method not in method.upstream:
        allowed = [name for name in method.upstream if name] or ["none (start from the base model)"]
        raise XstiltsInputError(
            f"method {method.name} cannot start from intermediate run {init_run_id}, trained with method "
            f"{upstream_method!r}; expected an upstream method of: {', '.join(allowed)} (adapter_stilts starts from a "
            "madx intermediate run; full and full_then_madx from a full one)")
