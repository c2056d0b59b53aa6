"""Reading the arithmetic a model writes: numbers (separators, decimals, money, signs), operators and
equations, evaluated exactly (fractions, no eval). The rule Verify agent corrects with it, the
rule Reasoning agent checks which reference steps a text has reached, and the detector's
measurement finds the first wrong step."""

from __future__ import annotations

import re
from fractions import Fraction

# --- the arithmetic a model writes: numbers, operators, equations ------------------------------
# A number: optional sign (- or U+2212 minus), optional $, digits plain ("1000", "08") or in
# thousands groups of exactly 3 ("1,000,000"), optional decimals ("0.5", "3.50"). It ends where
# no digit, no ".", ",", ":" or "'" + digit (10.5, 1,0025, 10:30, 5'10), no exponent (1e9) and
# no "%" follows: a match never reads a piece of a longer number. "1, 2" and "1,2" are two
# numbers (a list), "1,0025" none; "= 2." ends a sentence. Percentages are not read (is
# "100 + 20% = 120" an increase or 100.2?): an equation with one is skipped, never "corrected".
_NUM_END = r"(?![\d_%]|[.,:']\d|[eE][-+]?\d|\s*%)"
_NUMBER = rf"[-\u2212]?\$?(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?{_NUM_END}"
# Operators: + - (or U+2212) * × ÷ /, and x when spaced on both sides ("6 x 2") or glued on both
# ("6x2"): "3x + 2" and "2x -4" are algebra, not products.
_OP = r"(?:\s*[-+*/\u00d7\u00f7\u2212]\s*|\s+x\s+|x(?=\d))"
# Where an expression may start: not glued to a word, number, "$", "%", ")" or an operator, not
# after an operator that follows an operand ("x - 3 + 2", "(1 + 2) * 3 + 1", "2^3 + 1": their
# tails are no equation of their own) and not after "digit space" ("1 000" is no thousands style
# read here).
_START = (r"(?<![\w.,:'$%^)\]\-+*/\u00d7\u00f7\u2212])(?<![\w)\]%][-+*/^\u00d7\u00f7\u2212]\s)"
          r"(?<![\w)\]%]\s[-+*/^\u00d7\u00f7\u2212]\s)(?<![\d)\]%]\sx\s)(?<!\d[ \t])")
# A right side is one number: not followed by an operator and a number ("= 4 + 1 = 5" is a
# chain: its first link is skipped, "4 + 1 = 5" checked) nor by a number ("= 2 1/2").
_RHS_END = r"(?![ \t]*(?:[-+*/^\u00d7\u00f7\u2212]|x)[ \t]*[-\u2212(]?\$?\d|[ \t]+\d)"
# Every equation Verify checks (numbers as above, / and ÷ included).
_EQUATION_ANY = re.compile(
    rf"{_START}(?P<lhs>{_NUMBER}(?:{_OP}{_NUMBER})+)\s*=\s*(?P<rhs>{_NUMBER}){_RHS_END}")
# The integer equations of that grammar (no $, separators, decimals or division), for readers of
# `int(m["rhs"])` (notebook 01's error labels, detector.first_error_char). Bounded like the
# above: it reads no piece of "1,000 + 2 = 1,002" or "0.5 * 4 = 2" (it read "000 + 2 = 1").
_INTEGER = rf"-?\d+{_NUM_END}"
EQUATION = re.compile(
    rf"{_START}(?P<lhs>{_INTEGER}(?:(?:\s*[-+*\u00d7\u2212]\s*|\s+x\s+|x(?=\d)){_INTEGER})+)"
    rf"\s*=\s*(?P<rhs>{_INTEGER}){_RHS_END}")


_TERM = re.compile(r"\s*([-+*/x\u00d7\u00f7\u2212])\s*([-\u2212]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)")


def _read_number(number: str) -> Fraction:
    """The exact value of a number as _NUMBER reads it ("-$1,200.50" -> -2401/2)."""
    number = number.replace("\u2212", "-").replace("$", "").replace(",", "")
    sign = -1 if number.startswith("-") else 1
    whole, _, decimals = number.lstrip("-").partition(".")
    value = Fraction(int(whole))
    if decimals:
        value += Fraction(int(decimals), 10 ** len(decimals))
    return sign * value


def evaluate_expression(lhs: str) -> int | Fraction:
    """Exact value of an expression of + - * / (x and × as *, ÷ as /, U+2212 as -), * and / before
    + and -: an EQUATION's (or _EQUATION_ANY's) left side. Read number by number (no eval): a
    line break inside it ("5 -\n-2") or a leading zero ("08") is model text like any other, not a
    syntax error; "1,000", "$5" and "0.5" are numbers (see _NUMBER). An int when whole, else a
    Fraction; ZeroDivisionError on a division by zero."""
    first = re.match(r"\s*([-\u2212]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)", lhs)
    total, term = Fraction(0), _read_number(first[1])
    for op, number in _TERM.findall(lhs, first.end()):
        value = _read_number(number)
        if op in "+-\u2212":
            total, term = total + term, value if op == "+" else -value
        elif op in "/\u00f7":
            term /= value
        else:
            term *= value
    value = total + term
    return int(value) if value.denominator == 1 else value


def _format_number(value: Fraction, dollar: bool, commas: bool, places: int) -> str | None:
    """`value` written in a model's style: "$" if `dollar`, thousands commas if `commas`, at
    least `places` decimals (more if it needs them: 2.5, never 2.50 unless the model wrote 2
    places); None when it has no finite decimal expansion (10/3)."""
    den = value.denominator
    needed = 0
    for p in (2, 5):
        k = 0
        while den % p == 0:
            den, k = den // p, k + 1
        needed = max(needed, k)
    if den != 1:
        return None
    places = max(places, needed)
    whole, decimals = divmod(abs(value.numerator) * 10 ** places // value.denominator, 10 ** places)
    text = f"{whole:,}" if commas else str(whole)
    if places:
        text += "." + str(decimals).zfill(places)
    return ("-" if value < 0 else "") + ("$" if dollar else "") + text


def _decimal_places(number: str) -> int:
    return len(number.partition(".")[2])


def wrong_equations(text: str):
    """(match, correct right side) of each wrong equation of `text` (_EQUATION_ANY), in order.

    Exact arithmetic (Fraction). A right side with decimals may be rounded: "10 / 3 = 3.33" and
    "0.125 * 3 = 0.38" are right (within half a unit of its last written place). Skipped, neither
    right nor wrong: a division by zero, a number too long for int(), and a wrong equation whose
    true value has no finite decimal expansion ("100 / 3 = 30"): no correction could be written.
    A line starting "- 3 + 2 = ..." is a bullet or a spaced sign: right if either reading is.
    The correction is in the equation's style: "$" if its right side has one, thousands commas if
    any of its numbers has them, the right side's decimal places (or as many as the value needs)."""
    for m in _EQUATION_ANY.finditer(text):
        try:
            true = Fraction(evaluate_expression(m["lhs"]))
            claimed = _read_number(m["rhs"])
        except (ZeroDivisionError, ValueError):
            continue
        places = _decimal_places(m["rhs"])

        def right(value: Fraction) -> bool:
            return value == claimed or (places > 0 and abs(value - claimed) * 2 * 10 ** places <= 1)
        if right(true):
            continue
        line = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
        if (re.fullmatch(r"[ \t]*[-\u2212][ \t]+", line) and m["lhs"][0] not in "-\u2212"
                and right(Fraction(evaluate_expression("-" + m["lhs"])))):
            continue  # "- 3 + 2 = -1": a spaced sign, not a list bullet
        try:
            fixed = _format_number(true, "$" in m["rhs"], "," in m[0], places)
        except ValueError:  # more digits than str() writes
            continue
        if fixed is not None:
            yield m, fixed


def last_wrong_equation(text: str) -> tuple[str, str, str] | None:
    """(left side with its whitespace collapsed, claimed right side, correct right side) of the
    last wrong equation in `text` (_wrong_equations), or None."""
    wrong = None
    for m, fixed in wrong_equations(text):
        wrong = (re.sub(r"\s+", " ", m["lhs"].strip()), m["rhs"], fixed)
    return wrong



_RESULT = re.compile(rf"=\s*({_NUMBER})")


def step_reached(step: str, text: str) -> bool:
    """Whether `text` states the result of reference `step` (the number after its last '=',
    "Natalia sold 48/2 = 24 clips." included) after an '=' of its own, compared by value:
    "= 1,002", "= $1002" and "= 1002.0" reach "= 1002"; "= 10.5" does not reach "= 10", nor
    "= 1,0025" "= 1,002". A step without such a number is never reached."""
    results = _RESULT.findall(step)
    if not results:
        return False
    try:
        want = _read_number(results[-1])
        return any(_read_number(n) == want for n in _RESULT.findall(text))
    except ValueError:  # a number too long for int()
        return False
