"""Metrics exactly as google-research/xtreme `evaluate.py` defines them, on a 0-100 scale."""

from typing import Sequence

from seqeval.metrics import f1_score, precision_score, recall_score


def accuracy(labels: Sequence, predictions: Sequence) -> dict[str, float]:
    """XTREME `accuracy`: 100 * share of predictions equal to the label."""
    if len(labels) != len(predictions) or not labels:
        raise ValueError(f"need as many predictions as labels, and at least one: {len(predictions)} vs {len(labels)}")
    return {"accuracy": 100.0 * sum(p == l for p, l in zip(predictions, labels)) / len(labels)}


def tagging_f1(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """XTREME `f1`: seqeval micro chunk F1/precision/recall (default mode), plus token accuracy beside it.

    For UD-POS this "F1" is seqeval's chunk F1 over UPOS tags, not token accuracy; both are reported.
    """
    flat_labels = [tag for sentence in labels for tag in sentence]
    flat_predictions = [tag for sentence in predictions for tag in sentence]
    return {
        "f1": 100.0 * f1_score(labels, predictions),
        "precision": 100.0 * precision_score(labels, predictions),
        "recall": 100.0 * recall_score(labels, predictions),
        "token_accuracy": accuracy(flat_labels, flat_predictions)["accuracy"],
    }

