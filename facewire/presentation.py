"""How results look to a person: shared by the terminal monitor, the web dashboard and the log views."""

from __future__ import annotations

from facewire.schema import FaceResult


def result_style(result: FaceResult, low_margin: float = 0.05) -> str:
    """The seed's colours: green known, yellow low confidence, red unknown."""
    if not result.known:
        return "red"
    return "yellow" if result.score < result.threshold + low_margin else "green"
