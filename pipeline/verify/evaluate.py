"""The numeric value of a plain LaTeX expression ("\\frac{3\\sqrt{6}}{2}", "8-2\\pi", "2(\\sqrt{2}-1)").

Only arithmetic on numbers, \\frac, \\sqrt, π and powers, with implicit products; anything else (a variable,
a function, a set) has no value here. Two answers with clearly different values are different answers, so
most wrong expressions are settled without math-verify; equal values still go to math-verify for proof.
"""

from __future__ import annotations

import math
import re

from pipeline.verify.model import MAX_BRACE_DEPTH, MAX_MATH_VERIFY_CHARS
from pipeline.verify.normalize import strip_latex_wrappers

_REWRITES = (
    (re.compile(r"\\(?:cdot|times)"), "*"),
    (re.compile(r"\\div|:"), "/"),  # a ratio "3:2" has the value 3/2
    (re.compile(r"\\pi\b|π"), "p"),
    (re.compile(r"√"), r"\\sqrt"),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\s+|\$"), ""),
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
MAX_EXPONENT = 400.0  # larger powers overflow or take long: no value


class _NoValue(Exception):
    """The text is not a plain arithmetic expression."""


def numeric_value(answer: str) -> float | None:
    """The value of `answer` as a float, or None when it is not plain arithmetic (or overflows)."""
    if len(answer) > MAX_MATH_VERIFY_CHARS:
        return None
    text = strip_latex_wrappers(answer)
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    if not text:
        return None
    parser = _Parser(text)
    try:
        value = parser.expression()
        if parser.position != len(text):
            return None
    except (_NoValue, OverflowError, ZeroDivisionError, ValueError):
        return None
    return value if math.isfinite(value) else None


class _Parser:
    """Recursive descent: expression := term (± term)*; term := power (* or / or juxtaposed power)*."""

    def __init__(self, text: str):
        self.text, self.position, self.depth = text, 0, 0

    def peek(self) -> str:
        return self.text[self.position] if self.position < len(self.text) else ""

    def take(self, token: str) -> bool:
        if self.text.startswith(token, self.position):
            self.position += len(token)
            return True
        return False

    def expression(self) -> float:
        self.depth += 1
        if self.depth > MAX_BRACE_DEPTH:
            raise _NoValue
        value = self.term()
        while self.peek() in ("+", "-"):
            sign = 1 if self.text[self.position] == "+" else -1
            self.position += 1
            value += sign * self.term()
        self.depth -= 1
        return value

    def term(self) -> float:
        value = self.signed()
        while True:
            if self.take("*"):
                value *= self.signed()
            elif self.take("/"):
                value /= self.signed()
            elif self.peek() and (self.peek().isdigit() or self.peek() in "({\\p."):
                value *= self.power()  # implicit product: "2\sqrt{3}", "4p", "2(x)"
            else:
                return value

    def signed(self) -> float:
        if self.take("-"):
            return -self.signed()
        self.take("+")
        return self.power()

    def power(self) -> float:
        base = self.primary()
        if self.take("^"):
            exponent = self.group() if self.peek() in "{(" else self.digit()
            if abs(exponent) > MAX_EXPONENT:
                raise _NoValue
            return base**exponent
        return base

    def primary(self) -> float:
        number = _NUMBER.match(self.text, self.position)
        if number:
            self.position = number.end()
            return float(number.group())
        if self.take("p"):
            return math.pi
        if self.peek() in "({":
            return self.group()
        if self.take("\\frac"):
            return self.argument() / self.argument()
        if self.take("\\sqrt"):
            degree = 2.0
            if self.take("["):
                degree = self.expression()
                if not self.take("]"):
                    raise _NoValue
            radicand = self.argument()
            if radicand < 0:
                raise _NoValue
            return radicand ** (1 / degree)
        raise _NoValue

    def group(self) -> float:
        closing = {"(": ")", "{": "}"}[self.peek()]
        self.position += 1
        value = self.expression()
        if not self.take(closing):
            raise _NoValue
        return value

    def argument(self) -> float:
        """A braced argument, or a single digit ("\\frac12")."""
        return self.group() if self.peek() == "{" else self.digit()

    def digit(self) -> float:
        if self.peek().isdigit():
            self.position += 1
            return float(self.text[self.position - 1])
        raise _NoValue
