"""A diagnosis as a technician's report (rich) or as JSON."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from openbms.diagnose.apply import ApplyResult
from openbms.diagnose.engine import SOURCE_WORDS, Diagnosis
from openbms.diagnose.guide import Question

_TITLES = {
    "none": ("green", "No reset needed"),
    "fix_root_cause": ("yellow", "Fix the cause first"),
    "soft_reset": ("cyan", "Soft reset"),
    "hard_reset": ("magenta", "Hard reset"),
    "replace_cells": ("red", "Replace the damaged cell(s)"),
    "service": ("red", "Service needed"),
}

_STATE_WORDS = {
    "no_reply": "unknown (no reply; nothing measured)",
    "silent": "no sign of life (as you describe it)",
}


def diagnosis_json(diagnosis: Diagnosis, applied: ApplyResult | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "recommendation": diagnosis.recommendation,
        "summary": diagnosis.summary,
        "reasons": [r.model_dump(exclude_none=True) for r in diagnosis.reasons],
        "steps": [s.model_dump(exclude_none=True) for s in diagnosis.steps],
        "assumptions": diagnosis.assumptions,
    }
    if diagnosis.damaged_cells:
        doc["damaged_cells"] = diagnosis.damaged_cells
    if applied is not None:
        doc["applied"] = {
            "ok": applied.ok,
            "outcome": applied.outcome,
            "message": applied.message,
            "final_state": applied.final_state,
            "steps": [
                {"index": o.index, "ok": o.ok, "detail": o.detail} | ({"for_a_person": True} if o.for_a_person else {})
                for o in applied.outcomes
            ],
        }
        if applied.for_a_person:
            doc["applied"]["for_a_person"] = applied.for_a_person
    return doc


def print_diagnosis(console: Console, diagnosis: Diagnosis, state: str | None = None) -> None:
    colour, title = _TITLES[diagnosis.recommendation]
    lines = [f"[bold]{diagnosis.summary}[/]"]
    if state:
        lines.append(f"BMS state: {_STATE_WORDS.get(state, state)}")
    lines.append("")
    lines.append("[bold]Why[/]")
    lines += [f"  • {escape(r.text)} [dim]({SOURCE_WORDS[r.source]})[/]" for r in diagnosis.reasons]
    if diagnosis.steps:
        lines.append("")
        lines.append("[bold]What to do[/]")
        for i, step in enumerate(diagnosis.steps, start=1):
            lines.append(f"  {i}. {step.text}")
            if step.safety:
                lines.append(f"     [red]⚠ {step.safety}[/]")
    if diagnosis.assumptions:
        lines.append("")
        lines.append("[bold]Assumed[/]")
        lines += [f"  – {a}" for a in diagnosis.assumptions]
    console.print(
        Panel("\n".join(lines), title=f"[bold {colour}]{title}[/] ({diagnosis.recommendation})", border_style=colour)
    )


def print_applied(console: Console, applied: ApplyResult) -> None:
    for outcome in applied.outcomes:
        mark = "[yellow]☞[/]" if outcome.for_a_person else "[green]✓[/]" if outcome.ok else "[red]✗[/]"
        console.print(f"  {mark} {outcome.index}. {outcome.text[:90]} → {outcome.detail}")
    colour = {"done": "green", "for_a_person": "yellow"}.get(applied.outcome, "red")
    console.print(f"[bold {colour}]{applied.message}[/]")


def print_guide_question(console: Console, question: Question) -> str:
    """Ask one question on the terminal; an empty answer means "don't know"."""
    choices = f" [{' / '.join(question.choices)} / don't know]" if question.choices else " (Enter: don't know)"
    console.print(f"[bold]{escape(question.text)}[/]{escape(choices)}")
    console.print("> ", end="")
    line = sys.stdin.readline()
    return line.rstrip("\n")
