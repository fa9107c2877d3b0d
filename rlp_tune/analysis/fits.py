"""The fit registry: one entry per kind of fit, registered by the file that defines it.

    register_fit("logistic", fit=fit_logistic, result=LogisticFit, lines=logistic_lines)   # fit_lambda.py
    fit_lines(a.fits["memorization_vs_lambda"], "memorization_vs_lambda")   # → its text lines
    FITS.get("logistic").fit(lam, y, n_boot=200, seed=0)                    # LogisticFit | NotIdentified

An entry (`FitKind`) says what a fit of that kind is: the function that makes it (seeded: the same
inputs and seed give the same CI), the typed result it returns when identified (a dataclass with
`fitted = True` and a JSON-safe `to_dict()`; otherwise the fit returns `identify.NotIdentified`,
which carries a reason and no number), and its text (`lines(result, name) -> list[str]`, used by
`rlp-tune analyze` and the report's appendix). Which quantity is fitted on which trials is the
document's choice (document.py); how a result reads is the fit's own.

Adding a fit: one file (fit_<name>.py) with the function, the result type, its lines and its
`register_fit` call; tests/test_fit_registry.py imports every analysis/fit_*.py and checks every entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..registry import Registry
from .identify import NotIdentified


@dataclass(frozen=True)
class FitKind:
    name: str
    fit: Callable[..., Any]                      # (..., n_boot=, seed=) → result | NotIdentified
    result: type                                 # the identified result's type
    lines: Callable[[Any, str], list[str]]       # (result, name) → text lines


FITS = Registry("fit")
list_fits = FITS.list


def register_fit(name: str, *, fit: Callable[..., Any], result: type,
                 lines: Callable[[Any, str], list[str]]) -> FitKind:
    return FITS.add(name, FitKind(name, fit, result, lines))


def fit_kind(result: Any) -> FitKind:
    """The registered kind whose result type `result` is (its file registered it when it was imported)."""
    for name in FITS.list():
        kind = FITS.get(name)
        if isinstance(result, kind.result):
            return kind
    raise TypeError(f"no registered fit returns a {type(result).__name__} (analysis/fits.py)")


def fit_lines(result: Any, name: str) -> list[str]:
    """The text of one fit result: a fit that is not identified gives its reason and no number."""
    if isinstance(result, NotIdentified):
        return [f"{name}: not fitted: {result.reason}"]
    return fit_kind(result).lines(result, name)

