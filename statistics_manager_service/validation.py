"""Request validation messages that name the offending parameter."""

from __future__ import annotations

from typing import Any, ClassVar

from connexion.validators import ParameterValidator
from jsonschema import Draft4Validator
from jsonschema.exceptions import best_match


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
        name = param.get("name", param_name)
        detail = _advice(value, param.get("schema", param)) or error.split("\n", 1)[0]
        return f"{parameter_type} parameter '{name}' is invalid: {detail}"


def _advice(value: Any, schema: dict[str, Any]) -> str | None:
    """Say what a value should look like instead of quoting the schema rule it broke, when the
    rule is a pattern (show the expected format by example) or a size limit."""
    if not isinstance(value, (str, list)):
        return None
    failure = best_match(Draft4Validator(schema).iter_errors(value))
    if failure is None:
        return None
    rule, broken, instance = failure.validator, failure.schema, failure.instance
    if rule == "pattern" and isinstance(instance, str):
        example = broken.get("example")
        text = f"{instance!r} is not in the expected format" + (f", e.g. {example}" if example else "")
        if " " in instance:
            text += "; send the `+` of a time zone offset as `%2B` (a bare `+` arrives as a space)"
        return text
    if rule == "maxItems" and isinstance(instance, list):
        limit = broken["maxItems"]
        return f"{len(instance)} values given, at most {limit} per request; split them over several requests"
    if rule in ("minLength", "maxLength") and isinstance(instance, str):
        low, high = broken.get("minLength", 0), broken.get("maxLength")
        size = (
            f"exactly {low}" if low == high else f"{low} to {high}" if high is not None else f"at least {low}"
        )
        return f"{instance!r} has {len(instance)} characters; it must have {size}"
    return None


class CompiledParameterValidator(NamingParameterValidator):
    """NamingParameterValidator with each parameter's JSON schema compiled once per process.

    Connexion builds a fresh validator (and deep-copies the schema) for every parameter of every
    request, most of the time a request takes. A valid value is accepted by the compiled
    validator; anything else takes the unchanged path, so every error message stays the same.
    """

    _compiled: ClassVar[dict[int, tuple[dict[str, Any], Draft4Validator]]] = {}
    _COMPILED_LIMIT: ClassVar[int] = 2048

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        """Return None for a valid value, else the error NamingParameterValidator gives."""
        if value is not None and CompiledParameterValidator._schema_validator(param).is_valid(value):
            return None
        return NamingParameterValidator.validate_parameter(parameter_type, value, param, param_name)

    @staticmethod
    def _schema_validator(param: dict[str, Any]) -> Draft4Validator:
        compiled = CompiledParameterValidator._compiled
        entry = compiled.get(id(param))
        if entry is None or entry[0] is not param:
            if len(compiled) >= CompiledParameterValidator._COMPILED_LIMIT:
                compiled.clear()
            schema = param.get("schema", param)
            # The entry keeps `param` alive, so its id cannot be reused by another parameter.
            entry = (param, Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
            compiled[id(param)] = entry
        return entry[1]
