"""operator/README.md documents every operator setting."""

from __future__ import annotations

from pathlib import Path

from autotuner.operator.settings import OperatorSettings

README = Path(__file__).resolve().parents[2] / "operator" / "README.md"


def test_operator_readme_lists_every_setting_by_its_environment_variable() -> None:
    text = README.read_text()
    for name, field in OperatorSettings.model_fields.items():
        variable = (
            field.validation_alias if isinstance(field.validation_alias, str) else f"AUTOTUNER_{name.upper()}"
        )
        assert f"| `{variable}` |" in text, f"{variable} is missing from the settings table"
