"""Request validation messages that name the offending parameter."""

from __future__ import annotations

from typing import Any

from connexion.validators import ParameterValidator


class NamingParameterValidator(ParameterValidator):
    """Connexion's parameter validator, with the parameter's name at the front of every error."""

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        """Return an error naming the parameter, or None when the value is valid."""
        error: str | None = ParameterValidator.validate_parameter(parameter_type, value, param, param_name)
        if error is None or error.startswith("Missing"):
            return error
        first_line = error.split("\n", 1)[0]
        return f"{parameter_type} parameter '{param.get('name', param_name)}' is invalid: {first_line}"
