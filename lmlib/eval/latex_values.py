"""Final answers written in LaTeX, read as values sympy can compare: our own small reader.

Notable:
- the language is what MATH final answers mostly are: integers and decimals (exact, as
  rationals), + - * / ^, \\frac, \\sqrt and \\sqrt[n], \\pi, \\infty, single-letter variables,
  juxtaposition as multiplication (3\\sqrt{2}, 2\\pi), mixed numbers (2\\frac{1}{2} is 5/2, as
  MATH writes them), shorthand arguments (\\frac12, \\sqrt2, x^23 is x^2 3 as in TeX), and
  tuples, intervals, bare lists and unions of intervals, compared item by item with their
  brackets ((1,2) is not [1,2]);
- anything else (\\text, \\pm, sets, relations, a character outside the language) reads as None,
  and the caller falls back to comparing strings; reading never raises;
- guards instead of a timeout: answers over 200 characters are not read, a power of a number
  past 10^5 digits or with an exponent over 10^4 is refused (2^{10^{10}} would never finish),
  so is a division by zero, and sympy's simplify only runs on symbolic differences of at most
  40 operations;
- equality: sympy's canonical forms first (sqrt(18) is built as 3*sqrt(2)), exact for
  rationals (0.333 is not 1/3), else equal to 40 significant digits at 50 digits' precision.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sympy

MAX_ANSWER_CHARACTERS = 200
MAX_EXPONENT = 10_000
MAX_POWER_DIGITS = 100_000
MAX_SIMPLIFY_OPERATIONS = 40

# Spacing, sizing and unit marks that carry no value; \cdot and \times are products.
_CLEANUPS = (
    ("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""),
    ("\\ ", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\%", ""), ("\\$", ""), ("$", ""),
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cdot", "*"), ("\\times", "*"),
    ("\\div", "/"),
)
_TOKEN = re.compile(r"\d+(?:\.\d*)?|\.\d+|\\[A-Za-z]+|[A-Za-z]|[-+*/^(){}\[\],]")
_CONSTANTS = {"\\pi": "pi", "\\infty": "oo"}


@dataclass(frozen=True)
class LatexSequence:
    """A tuple or interval (brackets "(", "]" ...), a bare list ("", "") or a union of
    intervals ("cup", "cup"); its items are sympy expressions or sequences."""

    brackets: tuple[str, str]
    items: tuple[sympy.Expr | LatexSequence, ...]


class _Unreadable(Exception):
    """The answer is outside the language this module reads."""


def read_latex_value(answer: str) -> sympy.Expr | LatexSequence | None:
    """`answer` as a sympy expression or a `LatexSequence`; None when it cannot be read."""
    text = answer.strip()
    for before, after in _CLEANUPS:
        text = text.replace(before, after)
    text = "".join(text.split())
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        text = text.replace(",", "")  # 1,000 is a number, not the list (1, 0)
    if not text or len(text) > MAX_ANSWER_CHARACTERS:
        return None
    try:
        return _Reader(text).read()
    except Exception:  # sympy raises many kinds on odd input; such an answer is compared as text
        return None


def latex_values_equal(left: sympy.Expr | LatexSequence,
                       right: sympy.Expr | LatexSequence) -> bool:
    """Whether two values from `read_latex_value` are equal; sequences item by item."""
    if isinstance(left, LatexSequence) or isinstance(right, LatexSequence):
        return (isinstance(left, LatexSequence) and isinstance(right, LatexSequence)
                and left.brackets == right.brackets and len(left.items) == len(right.items)
                and all(latex_values_equal(a, b) for a, b in zip(left.items, right.items)))
    try:
        return _expressions_equal(left, right)
    except Exception:  # as in read_latex_value: an undecidable comparison is not an equality
        return False


def _expressions_equal(left: sympy.Expr, right: sympy.Expr) -> bool:
    import sympy

    if left == right:  # canonical forms: 3*sqrt(2) is what sqrt(18) becomes
        return True
    infinite = (sympy.oo, -sympy.oo, sympy.zoo)
    if left.has(*infinite) or right.has(*infinite):
        return False
    difference = left - right
    if difference == 0:
        return True
    if difference.free_symbols:
        if sympy.count_ops(difference) > MAX_SIMPLIFY_OPERATIONS:
            return False
        return sympy.simplify(difference) == 0
    if left.is_Rational and right.is_Rational:
        return False  # exact, and already unequal
    # Irrational constants sympy leaves unsimplified (sqrt(6) - sqrt(2) sqrt(3) stays)
    scale = max(1, abs(sympy.N(right, 50)))
    return bool(abs(sympy.N(difference, 50)) < sympy.Float("1e-40") * scale)


class _Reader:
    """Recursive descent over the tokens of one cleaned answer.

    answer   := expr ("," expr)* | expr ("\\cup" expr)*          (a union of intervals)
    expr     := term (("+" | "-") term)*
    term     := unary (("*" | "/") unary | power)*               juxtaposition multiplies
    unary    := ("-" | "+") unary | power
    power    := atom ("^" argument)?
    argument := "{" expr "}" | one digit | one atom              (\\frac12, x^2)
    atom     := number | number \\frac argument argument         (a mixed number or a product)
              | \\frac argument argument | \\sqrt ("[" expr "]")? argument | \\pi | \\infty
              | letter | "{" expr "}" | ("(" | "[") expr ("," expr)* (")" | "]")
    """

    def __init__(self, text: str):
        self.tokens = _TOKEN.findall(text)
        if "".join(self.tokens) != text:
            raise _Unreadable(f"a character outside the language in {text!r}")
        self.position = 0
        import sympy  # here, not at module level: importing lmlib.eval stays light

        self.sympy = sympy

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _Unreadable(f"expected {expected or 'more'}, found {token!r}")
        self.position += 1
        return token

    def read(self):
        first = self.expression()
        separator = self.peek()
        if separator in (",", "\\cup"):
            items = [first]
            while self.peek() == separator:
                self.take()
                items.append(self.expression())
            if separator == ",":
                first = LatexSequence(("", ""), tuple(items))
            elif all(isinstance(item, LatexSequence) for item in items):
                first = LatexSequence(("cup", "cup"), tuple(items))
            else:
                raise _Unreadable("a union of something other than intervals")
        if self.peek() is not None:
            raise _Unreadable(f"unexpected {self.peek()!r}")
        return first

    def expression(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            operator = self.take()
            value = self.arithmetic(value, self.term(), operator)
        return value

    def term(self):
        value = self.unary()
        while (token := self.peek()) is not None:
            if token in ("*", "/"):
                self.take()
                value = self.arithmetic(value, self.unary(), token)
            elif self.starts_atom(token):
                value = self.arithmetic(value, self.power(), "*")
            else:
                break
        return value

    def unary(self):
        if self.peek() in ("-", "+"):
            sign = self.take()
            value = self.unary()
            return self.arithmetic(0, value, "-") if sign == "-" else value
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        exponent = self.argument()
        if isinstance(base, LatexSequence) or isinstance(exponent, LatexSequence):
            raise _Unreadable("a power of a tuple or interval")
        if base.is_Rational and exponent.is_number:
            # sympy evaluates a rational power at once: bound the digits it would write
            size = math.log10(max(abs(base.p), abs(base.q), 2))
            if abs(exponent) > MAX_EXPONENT or abs(exponent) * size > MAX_POWER_DIGITS:
                raise _Unreadable("a power too large to evaluate")
        return self.arithmetic(base, exponent, "^")

    def argument(self):
        """A command's or exponent's argument: a braced group, else one digit or one atom."""
        token = self.peek()
        if token is None:
            raise _Unreadable("a missing argument")
        if token == "{":
            return self.group()
        if token[0].isdigit() and len(token) > 1:
            # \frac12 and x^23 take one digit; the rest stays for what follows
            self.tokens[self.position:self.position + 1] = [token[0], token[1:]]
        return self.atom()

    @staticmethod
    def starts_atom(token: str) -> bool:
        return (token[0].isdigit() or token[0] == "." or token.isalpha()
                or token in ("(", "{", "\\frac", "\\sqrt") or token in _CONSTANTS)

    def atom(self):
        sympy = self.sympy
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            number = sympy.Rational(token)
            if token.isdigit() and self.peek() == "\\frac":
                return self.mixed_number_or_product(number)
            return number
        if token == "\\frac":
            return self.arithmetic(self.argument(), self.argument(), "/")
        if token == "\\sqrt":
            index = 2
            if self.peek() == "[":
                self.take()
                index = self.expression()
                self.take("]")
            return sympy.root(self.argument(), index)
        if token in _CONSTANTS:
            return getattr(sympy, _CONSTANTS[token])
        if token.isalpha() and len(token) == 1:
            return sympy.Symbol(token)
        if token == "{":
            self.position -= 1
            return self.group()
        if token in ("(", "["):
            items = [self.expression()]
            while self.peek() == ",":
                self.take()
                items.append(self.expression())
            closing = self.take()
            if closing not in (")", "]"):
                raise _Unreadable(f"{token} closed by {closing}")
            if len(items) == 1 and (token, closing) == ("(", ")"):
                return items[0]  # parentheses that only group
            return LatexSequence((token, closing), tuple(items))
        raise _Unreadable(f"unknown token {token!r}")

    def mixed_number_or_product(self, whole):
        """2\\frac{1}{2} is the mixed number 5/2 (MATH writes them so); 3\\frac{\\pi}{2} is 3 pi/2."""
        self.take("\\frac")
        numerator, denominator = self.argument(), self.argument()
        if (numerator.is_Integer and denominator.is_Integer and numerator >= 0
                and denominator > 0):
            return whole + numerator / denominator
        return self.arithmetic(whole, self.arithmetic(numerator, denominator, "/"), "*")

    def group(self):
        self.take("{")
        value = self.expression()
        self.take("}")
        return value

    def arithmetic(self, left, right, operator: str):
        if isinstance(left, LatexSequence) or isinstance(right, LatexSequence):
            raise _Unreadable("arithmetic on a tuple or interval")
        sympy = self.sympy
        left, right = sympy.sympify(left), sympy.sympify(right)
        if operator == "+":
            value = left + right
        elif operator == "-":
            value = left - right
        elif operator == "*":
            value = left * right
        elif operator == "/":
            value = left / right
        else:
            value = left**right
        if value.has(sympy.zoo, sympy.nan):
            raise _Unreadable("a division by zero")
        return value
